// The React Flow canvas: drag-and-drop of palette nodes and workflow files, typed edges.
import {
  Background,
  Controls,
  MiniMap,
  Panel,
  ReactFlow,
  useReactFlow,
  type NodeTypes,
} from "@xyflow/react";
import { useCallback, useEffect, useMemo, type DragEvent } from "react";
import { portName, type GraphNode } from "../graph/model";
import { SUBGRAPH_TYPE, nodeSpecOf } from "../graph/subgraphs";
import { openWorkflowFile } from "../lib/openWorkflow";
import { useEditor } from "../store";
import { runPrefix, subgraphStatus } from "../store/runSlice";
import { Breadcrumb } from "./Breadcrumb";
import { NodeView } from "./NodeView";
import { TypeLegend } from "./TypeLegend";

export const PALETTE_DRAG_TYPE = "application/x-graphflow-node";
const nodeTypes: NodeTypes = { graphflow: NodeView };

const STATE_COLORS: Record<string, string> = {
  idle: "#4a5060",
  queued: "#6b7080",
  running: "#f5c542",
  cached: "#2f6f8f",
  done: "#2d7d52",
  failed: "#b03a3a",
  interrupted: "#7a4fa0",
};

/** The minimap, with each node in the colour of its run state. */
function StatusMiniMap() {
  const runs = useEditor((state) => state.nodeRuns);
  const prefix = useEditor((state) => runPrefix(state.openPath));
  const color = useCallback(
    (node: GraphNode): string => {
      const id = prefix + node.id;
      const status = runs[id]?.status ?? (node.data.nodeType === SUBGRAPH_TYPE ? subgraphStatus(runs, id) : undefined);
      return STATE_COLORS[status ?? "idle"] ?? "#4a5060";
    },
    [runs, prefix],
  );
  return <MiniMap<GraphNode> pannable zoomable nodeColor={color} nodeStrokeWidth={3} />;
}

export function Canvas() {
  const nodes = useEditor((state) => state.nodes);
  const edges = useEditor((state) => state.edges);
  const catalog = useEditor((state) => state.catalog);
  const subgraphs = useEditor((state) => state.subgraphs);
  const fitRequest = useEditor((state) => state.fitRequest);
  const actions = useEditor.getState();
  const flow = useReactFlow<GraphNode>();

  useEffect(() => {
    if (fitRequest === 0) return;
    // Wait a moment so new nodes are measured before fitting them into view.
    const timer = setTimeout(() => {
      const saved = useEditor.getState().viewport;
      if (saved) void flow.setViewport(saved);
      else if (flow.getNodes().length === 0) void flow.setViewport({ x: 0, y: 0, zoom: 1 });
      else void flow.fitView({ padding: 0.08, maxZoom: 1 });
    }, 60);
    return () => clearTimeout(timer);
  }, [fitRequest, flow]);

  // Each link takes the colour of the type its output carries.
  const typedEdges = useMemo(() => {
    const data = new Map(nodes.map((node) => [node.id, node.data]));
    return edges.map((edge) => {
      const spec = catalog ? nodeSpecOf(catalog, subgraphs, data.get(edge.source)) : undefined;
      const type = spec?.outputs.find((o) => o.name === portName(edge.sourceHandle))?.type;
      const color = (type && catalog?.types[type]?.color) || "#999";
      return { ...edge, style: { stroke: color, strokeWidth: edge.selected ? 3 : 2 } };
    });
  }, [edges, nodes, catalog, subgraphs]);

  const onDrop = async (event: DragEvent) => {
    event.preventDefault();
    const nodeType = event.dataTransfer.getData(PALETTE_DRAG_TYPE);
    if (nodeType) {
      actions.addNode(nodeType, flow.screenToFlowPosition({ x: event.clientX, y: event.clientY }));
      return;
    }
    const file = event.dataTransfer.files[0];
    if (!file) return;
    await openWorkflowFile(file, actions, { announce: true });
  };

  return (
    <div
      className="gf-canvas"
      data-testid="canvas"
      onDragOver={(event) => {
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
      }}
      onDrop={(event) => void onDrop(event)}
    >
      <ReactFlow<GraphNode>
        nodes={nodes}
        edges={typedEdges}
        nodeTypes={nodeTypes}
        onNodesChange={actions.onNodesChange}
        onEdgesChange={actions.onEdgesChange}
        onConnect={actions.connect}
        isValidConnection={actions.isValidConnection}
        onNodeDragStart={() => actions.checkpoint()}
        onNodeDoubleClick={(event, node) => {
          // A double-click on the title renames; elsewhere on a subgraph node it opens it.
          const target = event.target as HTMLElement;
          if (node.data.nodeType !== SUBGRAPH_TYPE || target.closest(".gf-node-title, input, select, textarea, button")) return;
          actions.openSubgraph(node.id);
        }}
        onMoveEnd={(_, viewport) => actions.setViewport(viewport)}
        deleteKeyCode={null}
        multiSelectionKeyCode={["Control", "Meta", "Shift"]}
        minZoom={0.1}
        maxZoom={2.5}
        proOptions={{ hideAttribution: true }}
        colorMode="dark"
      >
        <Background gap={24} />
        <Controls />
        <StatusMiniMap />
        <Panel position="top-left">
          <Breadcrumb />
        </Panel>
        <Panel position="top-right">
          <TypeLegend />
        </Panel>
      </ReactFlow>
    </div>
  );
}
