"""Longest stall of napari's event loop while the Segment widget works.

A QTimer fires every 10 ms in a real napari viewer; while the widget segments
an image in its worker thread, the gaps between timer ticks are recorded. A gap
much longer than 10 ms means the main thread was blocked (by work that should
be in the worker, or by adding layers). Goal: longest gap under 100 ms.

Needs a display: run under Xvfb::

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/event_loop.py
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class StallSampler:
    """Samples the main thread's Python stack while the event loop is blocked.

    A daemon thread looks at the time of the last timer tick every few
    milliseconds; while it is older than ``threshold_ms``, it records where the
    main thread is (its innermost frames). The most frequent places are where a
    stall spends its time; no profiler overhead while the loop runs freely.
    """

    def __init__(self, threshold_ms: float = 50.0, interval_ms: float = 5.0, depth: int = 25):
        self.threshold = threshold_ms / 1000
        self.interval = interval_ms / 1000
        self.depth = depth
        self.last_tick = time.perf_counter()
        #: per stall (keyed by the time of the tick it began after), where it was sampled
        self.stalls: dict[float, Counter[str]] = {}
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def tick(self) -> None:
        self.last_tick = time.perf_counter()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            stalled_since = self.last_tick
            if time.perf_counter() - stalled_since < self.threshold:
                continue
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-self.depth:]
            place = "\n".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack)
            self.stalls.setdefault(stalled_since, Counter())[place] += 1

    def report(self, most: int = 5) -> list[dict[str, object]]:
        """Where the longest stall spent its time: the most frequent stacks, with their share."""
        if not self.stalls:
            return []
        longest = max(self.stalls.values(), key=lambda places: sum(places.values()))
        total = sum(longest.values())
        return [{"share": round(count / total, 3), "stack": stack.split("\n")}
                for stack, count in longest.most_common(most)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="image edge in pixels")
    parser.add_argument("--model", default=None, help="model name or folder (default: bundled EM)")
    parser.add_argument("--warm-labels", action="store_true",
                        help="add and remove a Labels layer first, so napari's one-off labels "
                             "set-up (colormap compilation) is not counted")
    parser.add_argument("--trace-stalls", action="store_true",
                        help="sample the main thread's stack while the loop is blocked and print "
                             "where the stalls spend their time")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "event_loop.json")
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_organelle._widgets.segment import SegmentWidget
    from napari_organelle.models import default_model_name, list_models

    model_name = args.model or default_model_name("em")
    if model_name is None:
        raise SystemExit("no EM model installed; pass --model")
    rng = np.random.default_rng(0)
    image = (rng.normal(128, 30, (args.size, args.size))).clip(0, 255).astype(np.uint8)

    viewer = napari.Viewer(show=True)
    viewer.add_image(image, name="image", scale=(0.005, 0.005))
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    target = next(info for info in list_models() if info.name == model_name
                  or str(info.path) == str(model_name))
    widget.model_combo.value = target
    app = QApplication.instance()
    if args.warm_labels:
        viewer.add_labels(np.zeros((8, 8), np.uint16), name="warm-up")
        viewer.layers.remove("warm-up")
    for _ in range(20):  # let the window settle before measuring
        app.processEvents()
        time.sleep(0.01)

    ticks: list[float] = []
    sampler = StallSampler() if args.trace_stalls else None

    def on_tick() -> None:
        ticks.append(time.perf_counter())
        if sampler is not None:
            sampler.tick()

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(on_tick)
    timer.start()
    if sampler is not None:
        sampler.tick()
        sampler.start()
    started = time.perf_counter()
    widget.run()
    while widget.running or time.perf_counter() - started < 0.5:
        app.processEvents()
        time.sleep(0.001)
    for _ in range(30):  # layers are added at the end: keep measuring through that
        app.processEvents()
        time.sleep(0.01)
    timer.stop()
    if sampler is not None:
        sampler.stop()
    seconds = time.perf_counter() - started
    gaps = np.diff(ticks) * 1000 if len(ticks) > 1 else np.array([seconds * 1000])
    report = {
        "image": f"{args.size}x{args.size}", "model": str(model_name), "seconds": seconds,
        "ticks": len(ticks), "longest_gap_ms": float(gaps.max()),
        "p99_gap_ms": float(np.percentile(gaps, 99)), "median_gap_ms": float(np.median(gaps)),
        "layers_added": [layer.name for layer in viewer.layers if layer.name != "image"],
        "goal_ms": 100, "warm_labels": args.warm_labels,
    }
    if sampler is not None:
        report["stalls"] = sampler.report()
        for place in report["stalls"]:
            print(f"\n{place['share']:.0%} of the longest stall's samples:")
            print("\n".join(f"    {line}" for line in place["stack"]))
    print(f"segmented {report['image']} in {seconds:.1f} s; event-loop gaps: median "
          f"{report['median_gap_ms']:.0f} ms, p99 {report['p99_gap_ms']:.0f} ms, longest "
          f"{report['longest_gap_ms']:.0f} ms (goal < 100 ms)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    viewer.close()


if __name__ == "__main__":
    main()
