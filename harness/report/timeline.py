"""The report's timeline: every run as a bar, every finding as a mark, on
one axis of minutes (hours, for a long soak) since the first run started. Plotly draws it; the page
embeds plotly.js itself, so it renders with no network."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from harness.report.model import ReportData

PLOT_ID = "timeline"
MAX_LABEL = 70  # characters of a finding's title on the axis; the hover has it whole
RUN_CLASSES = (  # (legend name, colour, which exit codes)
    ("runs: clean", "#2e7d32", (0,)),
    ("runs: findings", "#c62828", (1,)),
    ("runs: could not test", "#757575", (2, 125)),
    ("runs: interrupted or unfinished", "#f9a825", (130, None)),
)
HOURS_FROM = 3 * 3600  # a longer axis counts hours, not minutes
PALETTE = ("#1565c0", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#4e342e")


def plain(text: str) -> str:
    """Console text for Plotly, which reads a few HTML tags and entities in labels and hovers:
    escaped, it shows as written."""
    return html.escape(text, quote=False)


def _label(title: str) -> str:
    return plain(title if len(title) <= MAX_LABEL else title[:MAX_LABEL - 1] + "…")


def _run_row(kernel: str) -> str:
    return plain(f"runs · {kernel}")


def _unit(data: ReportData) -> tuple[str, float]:
    last = max([s.end for s in data.runs] + [e.seconds for e in data.timeline] + [0.0])
    return ("hours", 3600.0) if last >= HOURS_FROM else ("minutes", 60.0)


def _run_traces(data: ReportData, per: float) -> list[go.Scatter]:
    traces = []
    for name, colour, codes in RUN_CLASSES:
        spans = [s for s in data.runs if s.exit_code in codes]
        if not spans:
            continue
        x, y, text = [], [], []
        for s in spans:
            hover = plain(f"run {s.run_id} ({s.kernel}), seed {s.seed}, exit {s.exit_code}")
            x += [s.start / per, s.end / per, None]
            y += [_run_row(s.kernel)] * 2 + [None]
            text += [hover, hover, None]
        traces.append(go.Scatter(x=x, y=y, text=text, name=name, mode="lines", line={"color": colour, "width": 10},
                                 hovertemplate="%{text}<extra></extra>"))
    return traces


def _finding_traces(data: ReportData, per: float) -> list[go.Scatter]:
    traces = []
    for i, kernel in enumerate(dict.fromkeys(e.kernel for e in data.timeline)):
        for known in (False, True):
            events = [e for e in data.timeline if e.kernel == kernel and e.known_issue == known]
            if not events:
                continue
            traces.append(go.Scatter(
                x=[e.seconds / per for e in events], y=[_label(e.title) for e in events],
                text=[plain(f"{e.title}: run {e.run_id} ({e.kernel}) at {e.seconds:.0f} s") for e in events],
                name=plain(f"{'known issue' if known else 'finding'} · {kernel}"), mode="markers",
                marker={"color": PALETTE[i % len(PALETTE)], "size": 11,
                        "symbol": "circle-open" if known else "x"},
                hovertemplate="%{text}<extra></extra>"))
    return traces


def timeline_figure(data: ReportData) -> go.Figure:
    rows = list(dict.fromkeys([_label(e.title) for e in sorted(data.timeline, key=lambda e: e.seconds)]
                              + [_run_row(s.kernel) for s in data.runs]))
    unit, per = _unit(data)
    fig = go.Figure(_run_traces(data, per) + _finding_traces(data, per))
    fig.update_layout(height=220 + 30 * len(rows), margin={"l": 20, "r": 20, "t": 30, "b": 40},
                      legend={"orientation": "h", "y": -0.25}, template="plotly_white")
    fig.update_xaxes(title_text=f"{unit} since the first run started", rangemode="tozero")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=list(reversed(rows)), automargin=True)
    if not rows:
        fig.add_annotation(text="no run with a start time, no finding with a time", showarrow=False)
    return fig


def timeline_html(data: ReportData) -> str:
    """A <div> with the plot and plotly.js inline: the page needs nothing else to draw it."""
    return timeline_figure(data).to_html(full_html=False, include_plotlyjs=True, div_id=PLOT_ID,
                                         config={"displaylogo": False, "responsive": True})
