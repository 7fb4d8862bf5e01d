// A graphflow node on the canvas: header with state, typed ports and widgets, results.
import { Handle, Position, type NodeProps } from "@xyflow/react";
import { memo, useMemo, useState } from "react";
import { useShallow } from "zustand/react/shallow";
import { viewUrl } from "../api/client";
import { inputHandle, outputHandle, portName, type GraphNode } from "../graph/model";
import { SUBGRAPH_TYPE, isPseudoNode, nodeSpecOf } from "../graph/subgraphs";
import { useEditor } from "../store";
import { runPrefix, subgraphStatus, type NodeRun } from "../store/runSlice";
import { InputRow } from "./InputRow";

function StatusBadge({ nodeId, run }: { nodeId: string; run: NodeRun | undefined }) {
  if (!run) return null;
  return (
    <span className={`gf-badge gf-badge-${run.status}`} data-testid={`status-${nodeId}`}>
      {run.status}
      {run.status === "done" && run.seconds !== undefined ? ` ${run.seconds.toFixed(2)}s` : ""}
    </span>
  );
}

function Results({ nodeId, run }: { nodeId: string; run: NodeRun }) {
  const images = run.ui?.images ?? [];
  return (
    <>
      {run.progress && run.progress.total > 0 && (
        <div className="gf-progress" data-testid={`progress-${nodeId}`}>
          <div style={{ width: `${(100 * run.progress.value) / run.progress.total}%` }} />
          <span>
            {run.progress.value}/{run.progress.total}
          </span>
        </div>
      )}
      {run.preview && (
        <img className="gf-preview" data-testid={`preview-${nodeId}`} src={run.preview} alt="preview" />
      )}
      {images.length > 0 && (
        <div className="gf-images" data-testid={`images-${nodeId}`}>
          {images.map((image) => (
            <a key={image.filename} href={viewUrl(image)} target="_blank" rel="noreferrer">
              <img src={viewUrl(image)} alt={image.filename} />
            </a>
          ))}
        </div>
      )}
      {run.ui?.text && (
        <pre className="gf-text nowheel" data-testid={`text-${nodeId}`}>
          {run.ui.text.join("\n")}
        </pre>
      )}
      {run.status === "failed" && run.message && <div className="gf-problem">{run.message}</div>}
    </>
  );
}

/** What a subgraph node says it is when the editor cannot show its ports. */
function SubgraphNote({ nodeId, file, subgraph }: { nodeId: string; file?: string; subgraph?: string }) {
  if (file !== undefined) {
    return (
      <div className="gf-node-note" data-testid={`subgraph-file-${nodeId}`}>
        subgraph {subgraph ?? ""} from {file} (edit it there)
      </div>
    );
  }
  return <div className="gf-problem">no subgraph {JSON.stringify(subgraph ?? "")} in this document</div>;
}

export const NodeView = memo(function NodeView({ id, data, selected }: NodeProps<GraphNode>) {
  const catalog = useEditor((state) => state.catalog);
  const subgraphs = useEditor((state) => state.subgraphs);
  const flatId = useEditor((state) => runPrefix(state.openPath)) + id;
  const ownRun = useEditor((state) => state.nodeRuns[flatId]);
  const innerStatus = useEditor((state) =>
    data.nodeType === SUBGRAPH_TYPE ? subgraphStatus(state.nodeRuns, flatId) : undefined,
  );
  const run = ownRun ?? (innerStatus ? { status: innerStatus } : undefined);
  const problems = useEditor((state) => state.problems[id]);
  const linked = useEditor(
    useShallow((state) =>
      state.edges.filter((edge) => edge.target === id).map((edge) => portName(edge.targetHandle)),
    ),
  );
  const [help, setHelp] = useState(false);
  const [renaming, setRenaming] = useState(false);
  const setTitle = useEditor((state) => state.setTitle);
  const spec = useMemo(
    () => (catalog ? nodeSpecOf(catalog, subgraphs, data) : undefined),
    [catalog, subgraphs, data],
  );
  const isSubgraph = data.nodeType === SUBGRAPH_TYPE;
  const pseudo = isPseudoNode(data);
  const openSubgraph = useEditor((state) => state.openSubgraph);
  const title = data.title ?? spec?.display_name ?? data.nodeType;
  const outputs = spec?.outputs ?? data.unknownPorts?.outputs.map((name) => ({ name, type: "" })) ?? [];
  const classes = ["gf-node", `gf-state-${run?.status ?? "idle"}`];
  if (selected) classes.push("gf-selected");
  if (problems || (!spec && data.file === undefined)) classes.push("gf-has-problems");
  if (isSubgraph) classes.push("gf-subgraph");
  if (pseudo) classes.push("gf-pseudo");

  return (
    <div className={classes.join(" ")} data-testid={`node-${id}`} data-node-type={data.nodeType}>
      <header className="gf-node-header" title={spec?.description}>
        {renaming ? (
          <input
            className="gf-field gf-title-input nodrag"
            data-testid={`title-input-${id}`}
            autoFocus
            defaultValue={title}
            onBlur={(event) => {
              setTitle(id, event.target.value);
              setRenaming(false);
            }}
            onKeyDown={(event) => {
              if (event.key === "Enter") event.currentTarget.blur();
              if (event.key === "Escape") setRenaming(false);
            }}
          />
        ) : (
          <span
            className="gf-node-title"
            title="Double-click to rename"
            onDoubleClick={() => setRenaming(true)}
          >
            {title}
          </span>
        )}
        <StatusBadge nodeId={id} run={run} />
        {isSubgraph && spec && (
          <button
            type="button"
            className="gf-help-button nodrag"
            data-testid={`open-subgraph-${id}`}
            title="Open the subgraph to edit it (or double-click the node)"
            onClick={() => openSubgraph(id)}
          >
            ⤢
          </button>
        )}
        <button
          type="button"
          className="gf-help-button nodrag"
          aria-label="help"
          onClick={() => setHelp(!help)}
        >
          ?
        </button>
      </header>
      {help && (
        <div className="gf-node-help nowheel" data-testid={`help-${id}`}>
          {isSubgraph || pseudo ? (
            <code>subgraph {data.subgraph}</code>
          ) : (
            <>
              <code>{data.nodeType}</code> {spec?.version} · {spec?.plugin}
            </>
          )}
          <p>{spec?.description ?? (isSubgraph ? "" : "This node type is not installed on the server.")}</p>
        </div>
      )}
      {!spec && isSubgraph && <SubgraphNote nodeId={id} file={data.file} subgraph={data.subgraph} />}
      {!spec && !isSubgraph && <div className="gf-problem">unknown node type {data.nodeType}</div>}
      {problems?.node.map((message) => (
        <div key={message} className="gf-problem" data-testid={`node-error-${id}`}>
          {message}
        </div>
      ))}
      {Object.entries(problems?.inputs ?? {})
        .filter(([name]) => !spec?.inputs.some((input) => input.name === name))
        .flatMap(([name, messages]) =>
          messages.map((message) => (
            <div key={name + message} className="gf-problem" data-testid={`input-error-${id}-${name}`}>
              {name}: {message}
            </div>
          )),
        )}
      {outputs.map((output) => (
        <div key={output.name} className="gf-port gf-output">
          <span className="gf-port-name">{output.name}</span>
          <Handle
            type="source"
            position={Position.Right}
            id={outputHandle(output.name)}
            data-testid={`handle-${id}-out-${output.name}`}
            title={`${output.name}: ${output.type}`}
            style={{ background: catalog?.types[output.type]?.color }}
          />
        </div>
      ))}
      {catalog &&
        spec?.inputs.map((input) => (
          <InputRow
            key={input.name}
            nodeId={id}
            catalog={catalog}
            spec={spec}
            input={input}
            value={data.values[input.name] ?? (isSubgraph ? input.default : undefined)}
            randomize={data.randomize[input.name] === true}
            linked={pseudo || linked.includes(input.name)}
            problems={problems?.inputs[input.name]}
          />
        ))}
      {!spec &&
        data.unknownPorts?.inputs.map((name) => (
          <div key={name} className="gf-port gf-input">
            <Handle type="target" position={Position.Left} id={inputHandle(name)} />
            <span className="gf-port-name">{name}</span>
          </div>
        ))}
      {run && <Results nodeId={id} run={run} />}
    </div>
  );
});
