// A seed: a number, optionally replaced by a random one before every run (the used one shows).
import { useEditor } from "../store";
import { NumberField, type FieldProps } from "./fields";

export function SeedField(props: FieldProps & { nodeId: string; randomize: boolean }) {
  const setRandomize = useEditor((state) => state.setRandomize);
  return (
    <span className="gf-seed">
      <NumberField {...props} />
      <label className="gf-randomize nodrag" title="Pick a new random seed before each run">
        <input
          type="checkbox"
          data-testid={`${props.testId}-randomize`}
          checked={props.randomize}
          onChange={(event) => setRandomize(props.nodeId, props.input.name, event.target.checked)}
        />
        randomize each run
      </label>
    </span>
  );
}
