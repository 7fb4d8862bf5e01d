// One input of a node: its typed handle, its name, its widget (when not linked), its problems.
import { Handle, Position } from "@xyflow/react";
import type { Catalog, InputSpec, NodeSpec } from "../api/catalog";
import { inputHandle } from "../graph/model";
import { widgetKind } from "../graph/values";
import { useEditor } from "../store";
import { BooleanField, ChoiceField, SliderField, TextField, NumberField } from "./fields";
import { ImageField } from "./ImageField";
import { SeedField } from "./SeedField";

interface InputRowProps {
  nodeId: string;
  catalog: Catalog;
  spec: NodeSpec;
  input: InputSpec;
  value: unknown;
  randomize: boolean;
  linked: boolean;
  problems: string[] | undefined;
}

export function InputRow(props: InputRowProps) {
  const { nodeId, catalog, spec, input, value, linked, problems } = props;
  const setValue = useEditor((state) => state.setValue);
  const kind = widgetKind(catalog, spec, input);
  const color = catalog.types[input.type]?.color;
  const testId = `input-${nodeId}-${input.name}`;
  const field = {
    input,
    value,
    testId,
    onChange: (next: unknown) => setValue(nodeId, input.name, next),
  };
  let widget = null;
  if (!linked) {
    if (kind === "boolean") widget = <BooleanField {...field} />;
    else if (kind === "choice") widget = <ChoiceField {...field} />;
    else if (kind === "image") widget = <ImageField {...field} />;
    else if (kind === "seed")
      widget = <SeedField {...field} nodeId={nodeId} randomize={props.randomize} />;
    else if (kind === "slider") widget = <SliderField {...field} />;
    else if (kind === "number") widget = <NumberField {...field} />;
    else if (kind === "multiline" || kind === "text") widget = <TextField {...field} />;
  }
  const wide = kind === "multiline" || kind === "image" || kind === "seed";
  return (
    <div className={`gf-port gf-input ${problems?.length ? "gf-invalid" : ""}`}>
      <Handle
        type="target"
        position={Position.Left}
        id={inputHandle(input.name)}
        data-testid={`handle-${nodeId}-in-${input.name}`}
        title={`${input.name}: ${input.type}`}
        style={{ background: color }}
      />
      <div className={`gf-port-body ${wide ? "gf-wide" : ""}`}>
        <span className="gf-port-name" title={input.description ?? input.type}>
          {input.name}
          {input.required && !linked && value === undefined ? " *" : ""}
        </span>
        {widget}
      </div>
      {problems?.map((message) => (
        <div key={message} className="gf-problem" data-testid={`input-error-${nodeId}-${input.name}`}>
          {message}
        </div>
      ))}
    </div>
  );
}
