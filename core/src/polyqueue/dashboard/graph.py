"""A workflow's graph as inline SVG: nodes in columns by depth, edges from each dependency
to its dependent, each node coloured by its job's state and linked to the job's page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from polyqueue.workflow_state import WorkflowNode

__all__ = ["MAX_DRAWN", "depths", "graph_svg"]

MAX_DRAWN = 400
"""Workflows with more nodes are listed, not drawn: a graph that size is not readable."""
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 180, 44, 60, 14, 12


def depths(nodes: list[WorkflowNode]) -> dict[int, int]:
    """Each node's column: 0 for a node with no dependency in the workflow, else one more
    than its deepest dependency's (nodes come in insertion order, dependencies first)."""
    inside = {node.job_id for node in nodes}
    column: dict[int, int] = {}
    for node in sorted(nodes, key=lambda n: n.job_id):
        parents = [column.get(p, 0) for p in node.depends_on if p in inside]
        column[node.job_id] = 1 + max(parents) if parents else 0
    return column


def graph_svg(nodes: list[WorkflowNode], base: str) -> Markup:
    """The graph; `base` prefixes the links to the jobs' pages."""
    column = depths(nodes)
    rows: dict[int, int] = {}
    place: dict[int, tuple[float, float]] = {}
    for node in nodes:
        depth = column[node.job_id]
        row = rows.get(depth, 0)
        rows[depth] = row + 1
        place[node.job_id] = (PAD + depth * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(column.values(), default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows.values(), default=1) * (NODE_H + GAP_Y) - GAP_Y
    parts = [
        (
            f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="workflow graph">'
        )
    ]
    parts += [_edge(place[p], place[n.job_id]) for n in nodes for p in n.depends_on if p in place]
    parts += [_node(node, place[node.job_id], base) for node in nodes]
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- numbers and escaped text only


def _edge(start: tuple[float, float], end: tuple[float, float]) -> str:
    x1, y1 = start[0] + NODE_W, start[1] + NODE_H / 2
    x2, y2 = end[0], end[1] + NODE_H / 2
    middle = (x1 + x2) / 2
    return (
        f'<path class="edge" d="M{x1:.0f},{y1:.0f} C{middle:.0f},{y1:.0f} '
        f'{middle:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"/>'
    )


def _node(node: WorkflowNode, at: tuple[float, float], base: str) -> str:
    x, y = at
    status = node.status.value
    label = escape(_shorten(node.name, 22))
    return (
        f'<a href="{escape(base)}/jobs/{node.job_id}" data-node="{node.job_id}">'
        f"<title>{escape(f'#{node.job_id} {node.name}: {status}')}</title>"
        f'<rect class="node s-{status}" x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" '
        f'height="{NODE_H}" rx="6"/>'
        f'<text x="{x + 8:.0f}" y="{y + 18:.0f}">#{node.job_id} {label}</text>'
        f'<text class="state" x="{x + 8:.0f}" y="{y + 35:.0f}">{status}</text></a>'
    )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
