"""Small plots drawn with QPainter: no matplotlib import (seconds) when a dock opens.

* :class:`LinePlot` - series against x, optional right axis (loss + accuracy);
* :class:`BarPlot` - horizontal bars with names (posteriors, per-class scores);
* :class:`ScatterPlot` - coloured points, click emits the index (t-SNE);
* :class:`HeatmapPlot` - a matrix with row/column names and values (confusion).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

BG = QColor("#262930")
FG = QColor("#d0d0d0")
GRID = QColor("#454a55")


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.2g}" if abs(v) < 0.1 else f"{v:.2f}"


class _Base(QWidget):
    def __init__(self, parent=None, min_height: int = 150):
        super().__init__(parent)
        self.setMinimumHeight(min_height)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.title = ""

    def _painter(self) -> QPainter:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), BG)
        f = QFont(p.font())
        f.setPointSizeF(7.5)
        p.setFont(f)
        return p

    def grab_png(self, path) -> None:
        self.grab().save(str(path))


class LinePlot(_Base):
    """``series``: name -> (x, y, colour, axis 'left'|'right', style '-'|'--'|'.')."""

    def __init__(self, parent=None, xlabel: str = "", ylabel: str = "", y2label: str = "",
                 y2range: tuple[float, float] | None = (0.0, 1.0)):
        super().__init__(parent)
        self.xlabel, self.ylabel, self.y2label, self.y2range = xlabel, ylabel, y2label, y2range
        self.series: dict[str, tuple] = {}
        self.vline: float | None = None

    def set_series(self, name: str, x, y, color: str, axis: str = "left", style: str = "-") -> None:
        self.series[name] = (np.asarray(x, float), np.asarray(y, float), color, axis, style)

    def clear(self) -> None:
        self.series.clear()
        self.vline = None
        self.update()

    def paintEvent(self, event):  # noqa: N802
        p = self._painter()
        w, h = self.width(), self.height()
        L, R, T, B = 40, 40 if self.y2label else 12, 34, 28
        area = QRectF(L, T, max(10, w - L - R), max(10, h - T - B))
        xs = [s[0] for s in self.series.values() if len(s[0])]
        left = [s[1][np.isfinite(s[1])] for s in self.series.values() if s[3] == "left" and len(s[1])]
        if xs:
            x0, x1 = min(float(x.min()) for x in xs), max(float(x.max()) for x in xs)
        else:
            x0, x1 = 0.0, 1.0
        x0, x1 = min(x0, 0.0), max(x1, x0 + 1)
        vals = np.concatenate(left) if left and sum(len(v) for v in left) else np.array([0.0, 1.0])
        y0, y1 = float(vals.min()), float(vals.max())
        y0 = min(0.0, y0)
        y1 = y1 * 1.05 if y1 > y0 else y0 + 1
        r0, r1 = self.y2range or (0.0, 1.0)

        def X(v):
            return area.left() + (v - x0) / (x1 - x0) * area.width()

        def Y(v, axis="left"):
            lo, hi = (y0, y1) if axis == "left" else (r0, r1)
            return area.bottom() - (v - lo) / (hi - lo) * area.height()

        p.setPen(QPen(GRID, 1))
        for t in _nice_ticks(y0, y1):
            p.drawLine(QPointF(area.left(), Y(t)), QPointF(area.right(), Y(t)))
            p.setPen(FG)
            p.drawText(QRectF(0, Y(t) - 7, L - 4, 14), int(Qt.AlignRight | Qt.AlignVCenter), _fmt(t))
            p.setPen(QPen(GRID, 1))
        for t in _nice_ticks(x0, x1, 6):
            p.setPen(FG)
            p.drawText(QRectF(X(t) - 20, area.bottom() + 2, 40, 12), int(Qt.AlignHCenter), _fmt(t))
        if self.y2label:
            for t in _nice_ticks(r0, r1):
                p.drawText(QRectF(area.right() + 3, Y(t, "right") - 7, R - 3, 14),
                           int(Qt.AlignLeft | Qt.AlignVCenter), _fmt(t))
        p.setPen(QPen(FG, 1))
        p.drawRect(area)
        p.drawText(QRectF(area.left(), h - 13, area.width(), 12), int(Qt.AlignHCenter), self.xlabel)
        p.drawText(QRectF(2, 18, w / 2, 14), int(Qt.AlignLeft), self.ylabel)
        if self.y2label:
            p.drawText(QRectF(w / 2, 18, w / 2 - 2, 14), int(Qt.AlignRight), self.y2label)
        if self.vline is not None:
            p.setPen(QPen(FG, 1, Qt.DotLine))
            p.drawLine(QPointF(X(self.vline), area.top()), QPointF(X(self.vline), area.bottom()))
        for name, (x, y, color, axis, style) in self.series.items():
            ok = np.isfinite(y)
            if not ok.any():
                continue
            c = QColor(color)
            if style == "faint":
                c.setAlpha(90)
            p.setPen(QPen(c, 1.0 if style == "faint" else 1.6, Qt.DashLine if style == "--" else Qt.SolidLine))
            pts = [QPointF(X(a), Y(b, axis)) for a, b in zip(x[ok], y[ok])]
            for a, b in zip(pts[:-1], pts[1:]):
                p.drawLine(a, b)
            if style != "faint":
                p.setPen(Qt.NoPen)
                p.setBrush(QColor(color))
                for q in pts:
                    p.drawEllipse(q, 2.2, 2.2)
                p.setBrush(Qt.NoBrush)
        # legend: one row above the plot
        fm = p.fontMetrics()
        x = area.left()
        for name, (_, y, color, _, style) in self.series.items():
            if not np.isfinite(y).any():
                continue
            p.setPen(QPen(QColor(color), 2, Qt.DashLine if style == "--" else Qt.SolidLine))
            p.drawLine(QPointF(x, 9), QPointF(x + 10, 9))
            p.setPen(FG)
            p.drawText(QPointF(x + 13, 12), name)
            x += 13 + fm.horizontalAdvance(name) + 10
        p.end()


class BarPlot(_Base):
    """Horizontal bars: ``names``, ``values`` in [0, vmax], optional error bars (lo, hi)."""

    def __init__(self, parent=None, vmax: float = 1.0):
        super().__init__(parent, min_height=60)
        self.names: list[str] = []
        self.values = np.zeros(0)
        self.lo = self.hi = None
        self.colors: list[str] = []
        self.vmax = vmax

    def set_bars(self, names: Sequence[str], values, colors: Sequence[str] | None = None, lo=None, hi=None):
        self.names, self.values = list(names), np.asarray(values, float)
        self.colors = list(colors) if colors is not None else ["#5b8fd6"] * len(self.names)
        self.lo = None if lo is None else np.asarray(lo, float)
        self.hi = None if hi is None else np.asarray(hi, float)
        self.setMinimumHeight(16 * len(self.names) + 10)
        self.update()

    def paintEvent(self, event):  # noqa: N802
        p = self._painter()
        w = self.width()
        L = 110
        row = 16
        for i, (name, v) in enumerate(zip(self.names, self.values)):
            y = 5 + i * row
            p.setPen(FG)
            p.drawText(QRectF(2, y, L - 6, row), int(Qt.AlignRight | Qt.AlignVCenter), name)
            width = max(0.0, min(1.0, v / self.vmax)) * (w - L - 50)
            p.fillRect(QRectF(L, y + 3, width, row - 6), QColor(self.colors[i % len(self.colors)]))
            if self.lo is not None and self.hi is not None:
                p.setPen(QPen(FG, 1))
                a = L + self.lo[i] / self.vmax * (w - L - 50)
                b = L + self.hi[i] / self.vmax * (w - L - 50)
                p.drawLine(QPointF(a, y + row / 2), QPointF(b, y + row / 2))
            p.setPen(FG)
            p.drawText(QRectF(L + width + 4, y, 46, row), int(Qt.AlignLeft | Qt.AlignVCenter), f"{v:.2f}")
        p.end()


class ScatterPlot(_Base):
    """2-D points coloured by class; clicking near a point emits its index."""

    point_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent, min_height=240)
        self.xy = np.zeros((0, 2))
        self.colors: list[str] = []
        self.legend: list[tuple[str, str]] = []
        self.selected: int | None = None

    def set_points(self, xy, colors: Sequence[str], legend: Sequence[tuple[str, str]] = ()):
        self.xy = np.asarray(xy, float).reshape(-1, 2)
        self.colors = list(colors)
        self.legend = list(legend)
        self.selected = None
        self.update()

    def _map(self):
        w, h = self.width(), self.height()
        m = 10
        if not len(self.xy):
            return lambda q: q, QRectF(m, m, w - 2 * m, h - 2 * m)
        lo, hi = self.xy.min(0), self.xy.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        area = QRectF(m, m, w - 2 * m - 100, h - 2 * m)

        def f(q):
            q = (np.asarray(q) - lo) / span
            return np.stack([area.left() + q[..., 0] * area.width(), area.bottom() - q[..., 1] * area.height()], -1)
        return f, area

    def paintEvent(self, event):  # noqa: N802
        p = self._painter()
        f, area = self._map()
        pts = f(self.xy) if len(self.xy) else np.zeros((0, 2))
        p.setPen(Qt.NoPen)
        for (x, y), c in zip(pts, self.colors):
            p.setBrush(QColor(c))
            p.drawEllipse(QPointF(x, y), 3.0, 3.0)
        if self.selected is not None and self.selected < len(pts):
            p.setBrush(Qt.NoBrush)
            p.setPen(QPen(QColor("white"), 2))
            p.drawEllipse(QPointF(*pts[self.selected]), 7.0, 7.0)
        p.setPen(FG)
        for i, (name, c) in enumerate(self.legend[:20]):
            y = 10 + 13 * i
            p.setBrush(QColor(c))
            p.setPen(Qt.NoPen)
            p.drawEllipse(QPointF(area.right() + 12, y + 6), 4, 4)
            p.setPen(FG)
            p.drawText(QRectF(area.right() + 20, y, 90, 12), int(Qt.AlignLeft | Qt.AlignVCenter), name)
        p.end()

    def index_at(self, x: float, y: float, radius: float = 8.0) -> int | None:
        if not len(self.xy):
            return None
        f, _ = self._map()
        d = np.hypot(*(f(self.xy) - np.array([x, y])).T)
        i = int(np.argmin(d))
        return i if d[i] <= radius else None

    def select(self, i: int | None) -> None:
        self.selected = i
        self.update()

    def mousePressEvent(self, event):  # noqa: N802
        pos = event.pos()
        i = self.index_at(pos.x(), pos.y())
        if i is not None:
            self.select(i)
            self.point_clicked.emit(i)


class HeatmapPlot(_Base):
    """A matrix (e.g. confusion, rows = true, columns = predicted), shaded by row fraction."""

    def __init__(self, parent=None):
        super().__init__(parent, min_height=200)
        self.matrix = np.zeros((0, 0))
        self.names: list[str] = []

    def set_matrix(self, matrix, names: Sequence[str]):
        self.matrix = np.asarray(matrix, float)
        self.names = list(names)
        self.setMinimumHeight(max(200, 18 * len(self.names) + 90))
        self.update()

    def paintEvent(self, event):  # noqa: N802
        p = self._painter()
        n = len(self.names)
        if n == 0:
            p.end()
            return
        L, T = 90, 74
        cell = max(8.0, min((self.width() - L - 6) / n, (self.height() - T - 6) / n))
        rows = self.matrix.sum(1, keepdims=True)
        frac = np.divide(self.matrix, rows, out=np.zeros_like(self.matrix), where=rows > 0)
        for i in range(n):
            p.setPen(FG)
            p.drawText(QRectF(0, T + i * cell, L - 4, cell), int(Qt.AlignRight | Qt.AlignVCenter), self.names[i][:14])
            p.save()
            p.translate(L + (i + 0.5) * cell, T - 3)
            p.rotate(-90)
            p.drawText(QRectF(0, -6, T - 6, 12), int(Qt.AlignLeft | Qt.AlignVCenter), self.names[i][:12])
            p.restore()
            for j in range(n):
                v = frac[i, j]
                c = QColor.fromRgbF(0.15 + 0.2 * v, 0.2 + 0.5 * v, 0.3 + 0.6 * v)
                r = QRectF(L + j * cell, T + i * cell, cell - 1, cell - 1)
                p.fillRect(r, c)
                if cell >= 16 and self.matrix[i, j]:
                    p.setPen(QColor("white") if v < 0.6 else QColor("black"))
                    p.drawText(r, int(Qt.AlignCenter), f"{int(self.matrix[i, j])}")
        p.end()
