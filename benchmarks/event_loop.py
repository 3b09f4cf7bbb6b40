"""Longest stall of napari's event loop while the Segment widget works.

A QTimer fires every 10 ms in a real napari viewer; while the widget segments
an image in its worker thread, the gaps between timer ticks are recorded. A gap
much longer than 10 ms means the main thread was blocked (by work that should
be in the worker, or by adding layers). Goal: longest gap under 100 ms.

``--core`` also times the same segmentation without napari, in a fresh Python
process started after the dock's runs, while the viewer idles (load the model,
then ``segment()`` with the options the dock used; then ``segment()`` once
more, warm), so the dock's time can be compared with the core's (goal: within
1.2x). ``--runs 2`` runs the dock a second time in the same viewer (model
loaded, napari's labels set up, result layers updated rather than added), to
compare with the core's warm time. The dock's first Run is clicked as soon as
the dock is open, as the most impatient user would.

Needs a display: run under Xvfb::

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/event_loop.py --core --runs 2

``--trace-stalls`` reads the main thread's frames from another thread; CPython
3.11 can crash doing that (a segmentation fault, python/cpython#99110 and
relatives), rarely: run again if it does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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

    The sampler is a Python thread too: while another thread holds the GIL (an
    extension module initialising during an import, a C call that does not
    release it), it cannot wake up, and neither can the main thread's Python
    code. When it wakes up that late, it records how late and where every other
    thread is (:meth:`gil_holds`): usually just past the call that held the GIL.
    """

    def __init__(self, threshold_ms: float = 50.0, interval_ms: float = 5.0, depth: int = 80):
        self.threshold = threshold_ms / 1000
        self.interval = interval_ms / 1000
        self.depth = depth
        self.last_tick = time.perf_counter()
        #: per stall (keyed by the time of the tick it began after), where it was sampled
        self.stalls: dict[float, Counter[str]] = {}
        #: (seconds the sampler overslept, {thread name: innermost frames}) per late wake-up
        self.late: list[tuple[float, dict[str, list[str]]]] = []
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
        woke = time.perf_counter()
        while not self._stop.wait(self.interval):
            now = time.perf_counter()
            if now - woke - self.interval > self.threshold:
                self._record_late(now - woke - self.interval)
            woke = now
            stalled_since = self.last_tick
            if now - stalled_since < self.threshold:
                continue
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-self.depth:]
            place = "\n".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack)
            self.stalls.setdefault(stalled_since, Counter())[place] += 1

    def _record_late(self, seconds: float) -> None:
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        places = {}
        for ident, frame in sys._current_frames().items():
            if ident == threading.get_ident():
                continue
            stack = traceback.extract_stack(frame)
            # the innermost frames outside importlib say which module was being imported
            outside = [f for f in stack if not f.filename.startswith("<frozen importlib")]
            shown = outside[-4:] + ([stack[-1]] if stack and stack[-1] not in outside else [])
            places[names.get(ident, str(ident))] = [
                f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in shown]
        self.late.append((seconds, places))

    def gil_holds(self, most: int = 5) -> list[dict[str, object]]:
        """The longest times the sampler could not run (the GIL was held), and where each
        other thread was when it could again."""
        return [{"ms": round(1000 * seconds), "threads": places}
                for seconds, places in sorted(self.late, key=lambda late: -late[0])[:most]]

    def _longest(self) -> Counter[str]:
        return max(self.stalls.values(), key=lambda places: sum(places.values()))

    def report(self, most: int = 5, depth: int = 25) -> list[dict[str, object]]:
        """Where the longest stall spent its time: the most frequent stacks (their innermost
        ``depth`` frames), with their share."""
        if not self.stalls:
            return []
        innermost: Counter[str] = Counter()
        for stack, count in self._longest().items():
            innermost["\n".join(stack.split("\n")[-depth:])] += count
        total = sum(innermost.values())
        return [{"share": round(count / total, 3), "stack": stack.split("\n")}
                for stack, count in innermost.most_common(most)]

    def frames(self, most: int = 30) -> list[dict[str, object]]:
        """The functions the longest stall was in, each with the share of its samples that
        had it on the stack (inclusive time), longest first."""
        if not self.stalls:
            return []
        longest = self._longest()
        total = sum(longest.values())
        inclusive: Counter[str] = Counter()
        for stack, count in longest.items():
            for function in {line.rsplit(" ", 1)[0].rsplit(":", 1)[0] + ":"
                             + line.rsplit(" ", 1)[1] for line in stack.split("\n")}:
                inclusive[function] += count
        return [{"share": round(count / total, 3), "function": function}
                for function, count in inclusive.most_common(most)]

    def longest_ms(self) -> float:
        """About how long the longest stall lasted (its samples times the interval)."""
        return 1000 * self.interval * sum(self._longest().values()) if self.stalls else 0.0


def test_image(size: int) -> np.ndarray:
    """The benchmark's image: noise around grey 128 (the same in every process)."""
    rng = np.random.default_rng(0)
    return (rng.normal(128, 30, (size, size))).clip(0, 255).astype(np.uint8)


def time_core(size: int, model_name: str, options: dict[str, object]) -> dict[str, float]:
    """The core's time for the dock's segmentation: load + ``segment()``, then warm.

    Runs in a fresh process (``--core-only``), after the package is imported, as
    the dock's time starts after napari has imported it.
    """
    from napari_organelle.inference import segment
    from napari_organelle.models import load_model

    image = test_image(size)
    started = time.perf_counter()
    model = load_model(model_name)
    loaded = time.perf_counter()
    segment(image, model, **options)
    cold = time.perf_counter()
    segment(image, model, **options)
    warm = time.perf_counter()
    return {"load_seconds": loaded - started, "cold_seconds": cold - started,
            "warm_seconds": warm - cold}


def core_in_subprocess(size: int, model_name: str, options: dict[str, object]) -> dict[str, float]:
    command = [sys.executable, __file__, "--core-only", "--size", str(size), "--model",
               str(model_name), "--options", json.dumps(options)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--core", action="store_true",
                        help="also time the same segmentation without napari (fresh process)")
    parser.add_argument("--runs", type=int, default=1,
                        help="dock runs in the same viewer (the first one is reported at the "
                             "top level; later ones update the result layers)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds between opening the dock and clicking Run (default 0.2: "
                             "at once; a user reading the dock gives its background set-up "
                             "a few seconds)")
    parser.add_argument("--core-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "event_loop.json")
    args = parser.parse_args()
    if args.core_only:
        print(json.dumps(time_core(args.size, args.model, json.loads(args.options))))
        return

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_organelle._widgets.segment import SegmentWidget
    from napari_organelle.models import default_model_name, list_models

    model_name = args.model or default_model_name("em")
    if model_name is None:
        raise SystemExit("no EM model installed; pass --model")
    image = test_image(args.size)

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
    settle_until = time.perf_counter() + args.settle
    while time.perf_counter() < settle_until:  # let the window settle before measuring
        app.processEvents()
        time.sleep(0.01)

    options = widget.plan().options  # what the core is given below

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
    runs = []
    for _ in range(max(1, args.runs)):
        first_tick = len(ticks)
        started = time.perf_counter()
        widget.run()
        while widget.running or time.perf_counter() - started < 0.5:
            app.processEvents()
            time.sleep(0.001)
        run_seconds = time.perf_counter() - started
        for _ in range(30):  # layers are added at the end: keep measuring through that
            app.processEvents()
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        run_ticks = ticks[first_tick:]
        gaps = np.diff(run_ticks) * 1000 if len(run_ticks) > 1 else np.array([seconds * 1000])
        runs.append({"seconds": seconds, "run_seconds": run_seconds, "ticks": len(run_ticks),
                     "longest_gap_ms": float(gaps.max()),
                     "p99_gap_ms": float(np.percentile(gaps, 99)),
                     "median_gap_ms": float(np.median(gaps))})
    timer.stop()
    if sampler is not None:
        sampler.stop()
    core = None
    if args.core:  # after the dock, while the viewer idles: a fresh process, as cold as the dock
        core = core_in_subprocess(args.size, target.name, options)
        print(f"core (fresh process): load + segment {core['cold_seconds']:.1f} s (load "
              f"{core['load_seconds']:.1f} s), again {core['warm_seconds']:.1f} s")
    first = runs[0]
    report = {
        "image": f"{args.size}x{args.size}", "model": str(model_name),
        "seconds": first["seconds"], "ticks": first["ticks"],
        "longest_gap_ms": first["longest_gap_ms"], "p99_gap_ms": first["p99_gap_ms"],
        "median_gap_ms": first["median_gap_ms"],
        "layers_added": [layer.name for layer in viewer.layers if layer.name != "image"],
        "goal_ms": 100, "warm_labels": args.warm_labels, "settle_seconds": args.settle,
        # seconds from Run until the results are shown (``seconds`` adds 0.3 s of watching)
        "run_seconds": first["run_seconds"],
        "runs": runs,
    }
    if core is not None:
        report["core"] = core
        report["dock_over_core"] = first["run_seconds"] / core["cold_seconds"]
        if len(runs) > 1:
            report["warm_dock_over_core"] = runs[1]["run_seconds"] / core["warm_seconds"]
    if sampler is not None:
        report["stalls"] = sampler.report()
        report["stall_functions"] = sampler.frames()
        report["gil_holds"] = sampler.gil_holds()
        for place in report["stalls"]:
            print(f"\n{place['share']:.0%} of the longest stall's samples:")
            print("\n".join(f"    {line}" for line in place["stack"]))
        print(f"\nthe longest stall (about {sampler.longest_ms():.0f} ms sampled) was in:")
        for entry in report["stall_functions"]:
            print(f"    {entry['share']:5.0%}  {entry['function']}")
        for hold in report["gil_holds"]:
            print(f"\nthe sampler could not run for {hold['ms']} ms (the GIL was held); then:")
            for name, stack in hold["threads"].items():
                print(f"    {name}: " + " > ".join(stack))
    for number, run in enumerate(runs, 1):
        print(f"run {number}: segmented {report['image']} in {run['run_seconds']:.1f} s; "
              f"event-loop gaps: median {run['median_gap_ms']:.0f} ms, p99 "
              f"{run['p99_gap_ms']:.0f} ms, longest {run['longest_gap_ms']:.0f} ms "
              "(goal < 100 ms)")
    if core is not None:
        ratio = f"dock / core: {report['dock_over_core']:.2f} first run"
        if "warm_dock_over_core" in report:
            ratio += f", {report['warm_dock_over_core']:.2f} warm"
        print(ratio + " (goal <= 1.2)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    viewer.close()


if __name__ == "__main__":
    main()
