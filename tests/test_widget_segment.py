"""GUI tests of the Segment dock widget, in a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_widget_segment.py

The models are tiny networks with random weights, so what they segment is
meaningless; the tests check what the widget does with it: layers, names,
placement, updates, cancellation, messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Labels
from napari.utils.notifications import ErrorNotification
from napari.utils.progress import progress
from qtpy.QtCore import Qt, QTimer

from napari_organelle._widgets._layers import METADATA_KEY, find_result_layers
from napari_organelle._widgets._tasks import TaskControls
from napari_organelle._widgets.segment import SegmentWidget
from napari_organelle.errors import InputError
from napari_organelle.models import ClassSpec, ModelCard, build_network, save_model
from napari_organelle.progress import Progress

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_bundled_models")]

RUN_TIMEOUT_MS = 60_000


# ---------------------------------------------------------------------- fixtures


def tiny_card(name: str, modality: str, classes: list[ClassSpec]) -> ModelCard:
    """A card for a small, fast U-Net (random weights are enough for GUI tests)."""
    return ModelCard(name=name, version="0", architecture="Unet", encoder="resnet18",
                     in_channels=1, modality=modality, classes=classes,
                     arch_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]},
                     tile_size=128)


@pytest.fixture(scope="session")
def tiny_model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A napari-organelle home with two tiny models, laid out as user models.

    ``<home>/models/tiny-em/0`` (EM: mitochondria as objects, membranes as a
    mask) and ``<home>/models/tiny-fluo/0`` (fluorescence: nuclei, mitochondria).
    """
    home = tmp_path_factory.mktemp("organelle-home")
    em = tiny_card("tiny-em", "em", [ClassSpec("mitochondria", "instance", min_size_px=10),
                                     ClassSpec("membranes", "semantic")])
    fluo = tiny_card("tiny-fluo", "fluorescence", [ClassSpec("nuclei", "instance"),
                                                   ClassSpec("mitochondria", "semantic")])
    for card in (em, fluo):
        save_model((card, build_network(card)), home / "models" / card.name / card.version)
    return home


@pytest.fixture(autouse=True)
def organelle_home(tiny_model_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees the tiny models, never the user's own."""
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tiny_model_home))
    return tiny_model_home


def cells_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Bright round blobs on a noisy background, uint16."""
    rng = np.random.default_rng(seed)
    image = rng.normal(1000, 50, shape)
    yy, xx = np.mgrid[:shape[-2], :shape[-1]]
    for _ in range(8):
        y, x = rng.uniform(0, shape[-2]), rng.uniform(0, shape[-1])
        image[..., (yy - y) ** 2 + (xx - x) ** 2 < rng.uniform(30, 120)] += 2000
    return image.clip(0, 65535).astype(np.uint16)


def make_widget(viewer) -> SegmentWidget:
    """A Segment widget docked in ``viewer`` (so closing the viewer deletes it)."""
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    return widget


def choose_model(widget: SegmentWidget, name: str) -> None:
    widget.model_combo.value = next(info for info in widget.model_combo.choices
                                    if info.name == name)


def run_and_wait(qtbot, widget: SegmentWidget) -> None:
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def labels_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if isinstance(layer, Labels)]


# ---------------------------------------------------------------------- segmenting


def test_one_labels_layer_per_organelle_placed_over_the_image(make_napari_viewer, qtbot,
                                                               tracebacks):
    viewer = make_napari_viewer()
    image = viewer.add_image(cells_image((128, 160)), name="em", scale=(4.0, 5.0),
                             translate=(10.0, -5.0))
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    widget.image_combo.value = image

    run_and_wait(qtbot, widget)

    assert widget.controls.last_error is None
    assert labels_names(viewer) == ["mitochondria", "membranes"]
    mitochondria, membranes = viewer.layers["mitochondria"], viewer.layers["membranes"]
    assert mitochondria.data.dtype == np.uint16 and membranes.data.dtype == np.uint8
    for layer in (mitochondria, membranes):
        assert layer.data.shape == (128, 160)
        np.testing.assert_array_equal(layer.scale, image.scale)
        np.testing.assert_array_equal(layer.translate, image.translate)
    assert mitochondria.metadata[METADATA_KEY] == {
        "source": "em", "class": "mitochondria", "kind": "instance", "run": 1,
        "model": "tiny-em@0"}
    assert set(np.unique(membranes.data)) <= {0, 1}
    np.testing.assert_allclose(membranes.colormap.map(1), [23 / 255, 190 / 255, 207 / 255, 1],
                               atol=0.01)  # the class colour, #17becf
    assert sorted(widget.last_result.labels) == ["membranes", "mitochondria"]
    assert widget.last_layers == [mitochondria, membranes]
    assert widget.status_label.value.startswith("Done in")
    assert widget.progress_bar.value == widget.progress_bar.max
    assert not tracebacks


def test_plugin_widget_from_the_manifest_segments(make_napari_viewer, qtbot, recwarn):
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((96, 128)), name="em")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-organelle", "Segment")
    assert isinstance(widget, SegmentWidget)
    choose_model(widget, "tiny-em")
    widget.class_checkboxes["membranes"].value = False

    run_and_wait(qtbot, widget)

    assert labels_names(viewer) == ["mitochondria"]
    assert viewer.layers["mitochondria"].data.shape == (96, 128)
    # napari hands plugins a proxy that warns on private attribute access
    assert not [w for w in recwarn if "Private attribute" in str(w.message)]


def test_running_again_updates_the_layers_undoably(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((128, 128)), name="em")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    run_and_wait(qtbot, widget)
    mitochondria = viewer.layers["mitochondria"]
    segmented = mitochondria.data.copy()

    # a manual correction, then a new run: the run overwrites it as one undo step
    mitochondria.paint((5, 5), new_label=999)
    corrected = mitochondria.data.copy()
    viewer.layers["membranes"].name = "my membranes"  # found by its tag, not its name
    run_and_wait(qtbot, widget)

    assert labels_names(viewer) == ["mitochondria", "my membranes"]
    assert viewer.layers["mitochondria"] is mitochondria
    assert mitochondria.metadata[METADATA_KEY]["run"] == 2
    np.testing.assert_array_equal(mitochondria.data, segmented)
    mitochondria.undo()
    np.testing.assert_array_equal(mitochondria.data, corrected)

    widget.keep_previous_check.value = True
    run_and_wait(qtbot, widget)

    assert labels_names(viewer) == ["mitochondria", "my membranes", "mitochondria [run 3]",
                                    "membranes [run 3]"]
    assert [layer.name for layer in find_result_layers(viewer, class_name="mitochondria")] == [
        "mitochondria", "mitochondria [run 3]"]


def test_each_image_gets_its_own_named_layers(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    first = viewer.add_image(cells_image((96, 96), seed=1), name="cell 1")
    second = viewer.add_image(cells_image((96, 96), seed=2), name="cell 2")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    widget.class_checkboxes["membranes"].value = False

    for image in (first, second, first):
        widget.image_combo.value = image
        run_and_wait(qtbot, widget)

    assert labels_names(viewer) == ["mitochondria", "mitochondria (cell 2)"]
    assert viewer.layers["mitochondria"].metadata[METADATA_KEY]["source"] == "cell 1"
    assert viewer.layers["mitochondria (cell 2)"].metadata[METADATA_KEY]["source"] == "cell 2"


def test_a_stack_gives_a_stack_of_labels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack = viewer.add_image(cells_image((3, 96, 96)), name="stack", scale=(50.0, 8.0, 8.0))
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    widget.volume_check.value = False  # plane by plane

    run_and_wait(qtbot, widget)

    for name in ("mitochondria", "membranes"):
        layer = viewer.layers[name]
        assert layer.data.shape == (3, 96, 96)
        np.testing.assert_array_equal(layer.scale, stack.scale)
    # instance ids are unique across the stack
    ids = [set(np.unique(plane)) - {0} for plane in viewer.layers["mitochondria"].data]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])


def test_a_z_stack_gives_3d_objects_with_the_layers_z_scale(make_napari_viewer, qtbot,
                                                              organelle_home, tracebacks):
    from napari_organelle.inference import segment

    viewer = make_napari_viewer()
    data = cells_image((5, 96, 96), seed=3)
    stack = viewer.add_image(data, name="stack", scale=(40.0, 8.0, 8.0))
    movie = viewer.add_image(data, name="movie", axis_labels=("t", "y", "x"))
    flat = viewer.add_image(data[0], name="flat")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")

    # the checkbox follows the layer: on for a Z stack, off for time and for 2-D
    for layer, expected in ((movie, False), (flat, False), (stack, True)):
        widget.image_combo.value = layer
        assert widget.volume_check.value is expected, layer.name
    assert widget.plan().options["z_anisotropy"] == 5.0

    run_and_wait(qtbot, widget)

    assert widget.controls.last_error is None
    assert widget.last_result.settings["volume"] is True
    assert widget.last_result.settings["z_anisotropy"] == 5.0
    for name in ("mitochondria", "membranes"):
        layer = viewer.layers[name]
        assert layer.data.shape == (5, 96, 96)
        np.testing.assert_array_equal(layer.scale, stack.scale)
    # the dock only passes the option: the layer holds what the core's volume mode gives
    expected = segment(data, str(organelle_home / "models" / "tiny-em" / "0"),
                       classes=["mitochondria"], tile_size=widget.tile_size_spin.value,
                       device="cpu", volume=True, z_anisotropy=5.0)
    np.testing.assert_array_equal(viewer.layers["mitochondria"].data,
                                  expected.labels["mitochondria"])
    assert not tracebacks

    widget.image_combo.value = movie
    assert widget.plan().options["volume"] is False


def test_pixel_size_comes_from_the_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    declared = viewer.add_image(np.zeros((32, 32)), name="declared",
                                metadata={"pixel_size_nm": 7.5})
    with_units = viewer.add_image(np.zeros((32, 32)), name="units", scale=(0.02, 0.02),
                                  units=("micrometer", "micrometer"))
    plain = viewer.add_image(np.zeros((32, 32)), name="plain")
    widget = make_widget(viewer)

    for layer, expected in ((declared, 7.5), (with_units, 20.0), (plain, 0.0)):
        widget.image_combo.value = layer
        assert widget.pixel_size_spin.value == pytest.approx(expected)


# ---------------------------------------------------------------------- cancel, responsiveness


def test_cancel_stops_a_long_run_and_adds_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((1024, 1024)), name="big")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    widget.tile_size_spin.value = 64  # about 440 tiles: minutes of work on a CPU

    widget.run_button.native.click()
    assert widget.running and not widget.run_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: widget.progress_bar.value > 0, timeout=RUN_TIMEOUT_MS)
    # napari's own progress bar (activity panel) follows the run too
    assert [bar.n for bar in progress._all_instances if bar.desc == "Segmentation"][0] > 0
    clicked = time.perf_counter()
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)

    assert time.perf_counter() - clicked < 10  # stops at the next batch of tiles
    assert widget.controls.cancelled
    assert labels_names(viewer) == []
    assert widget.last_result is None
    assert widget.status_label.value.startswith("Cancelled")
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_the_viewer_stays_responsive_during_a_run(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((256, 256)), name="em")
    # napari compiles its labels colormaps on first use (seconds, main thread): warm up
    viewer.add_labels(np.zeros((8, 8), np.uint16))
    viewer.layers.clear()
    viewer.add_image(cells_image((256, 256)), name="em")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    widget.class_checkboxes["membranes"].value = False
    widget.tile_size_spin.value = 64  # ~25 tiles, several batches

    beats_while_running: list[bool] = []
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: beats_while_running.append(widget.running))
    heartbeat.start(20)
    try:
        run_and_wait(qtbot, widget)
    finally:
        heartbeat.stop()

    assert labels_names(viewer) == ["mitochondria"]
    # The main thread kept handling events while the segmentation ran: the work is in a
    # worker thread. How long the longest stall is, is measured by benchmarks/event_loop.py
    # (a timing threshold here would fail on a loaded CI machine).
    assert sum(beats_while_running) >= 3


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("make_layer", "expected"), [
    (lambda viewer: viewer.add_image(
        np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), name="rgb"),
     "colour RGB image"),
    (lambda viewer: viewer.add_image(np.ones((1, 1), np.float32), name="dot"),
     "1 x 1 pixels"),
    (lambda viewer: viewer.add_image(np.zeros((2, 2, 2, 32, 32), np.float32), name="5d"),
     "5-D data"),
    (lambda viewer: viewer.add_image(np.full((64, 64), np.nan, np.float32), name="nan"),
     "image is blank"),
    (lambda viewer: viewer.add_labels(np.zeros((64, 64), np.uint8), name="masks"),
     "no image layer to segment ('masks' is not an image layer)"),
], ids=["rgb-colour", "1x1", "5-D", "all-NaN", "labels-only"])
def test_bad_input_gets_a_clear_message_and_no_layer(make_napari_viewer, qtbot, messages,
                                                     tracebacks, make_layer: Callable,
                                                     expected: str):
    viewer = make_napari_viewer()
    make_layer(viewer)
    layers_before = len(viewer.layers)
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")

    run_and_wait(qtbot, widget)

    errors = messages.errors
    assert len(errors) == 1 and expected in errors[0], errors
    assert errors[0][0].isupper()
    assert widget.status_label.value == f"Error: {errors[0]}"
    assert len(viewer.layers) == layers_before
    assert widget.last_result is None
    assert widget.run_button.enabled
    assert not tracebacks


def test_some_nans_are_segmented_with_a_warning(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    image = cells_image((96, 96)).astype(np.float32)
    image[10:20, 10:20] = np.nan
    viewer.add_image(image, name="holes")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")

    run_and_wait(qtbot, widget)

    assert labels_names(viewer) == ["mitochondria", "membranes"]
    assert any("NaN" in message for message in messages.warnings)
    assert not messages.errors


def test_a_model_for_another_modality_gets_a_warning(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((64, 64)), name="confocal", metadata={"modality": "fluorescence"})
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")

    run_and_wait(qtbot, widget)

    assert ("'confocal' is a fluorescence image and tiny-em@0 is an EM image model: expect "
            "poor results, or choose another model") in messages.warnings
    assert labels_names(viewer) == ["mitochondria", "membranes"]  # a warning, not a refusal


def test_a_corrupt_model_file_is_reported(make_napari_viewer, qtbot, messages, tracebacks,
                                          tiny_model_home, tmp_path, monkeypatch):
    home = tmp_path / "home"
    model = home / "models" / "broken" / "1"
    model.mkdir(parents=True)
    card = ModelCard.load(tiny_model_home / "models" / "tiny-em" / "0" / "card.json")
    card.name, card.version = "broken", "1"
    card.save(model / "card.json")
    (model / "model.safetensors").write_bytes(b"\x00 not safetensors \xff" * 10)
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(home))
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((64, 64)), name="em")
    widget = make_widget(viewer)
    assert widget.model_combo.value.full_name == "broken@1"

    run_and_wait(qtbot, widget)

    errors = messages.errors
    assert len(errors) == 1 and "corrupt" in errors[0], errors
    assert labels_names(viewer) == []
    assert not tracebacks


def test_without_models_the_widget_says_how_to_load_one(make_napari_viewer, qtbot, tmp_path,
                                                        monkeypatch, messages,
                                                        tiny_model_home):
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path))
    # a checkout without the bundled models (as before they were trained)
    monkeypatch.setattr("napari_organelle.models.registry.BUNDLED_DIR", tmp_path / "no-bundled")
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((64, 64)), name="em")
    widget = make_widget(viewer)

    assert widget.model_combo.value is None
    assert widget.status_label.value.startswith("No model installed")
    run_and_wait(qtbot, widget)
    assert "no model chosen" in messages.errors[0].lower()

    # "Model file": choosing the weights of a model that is not installed
    widget.model_file.value = tiny_model_home / "models" / "tiny-em" / "0" / "model.safetensors"
    assert widget.model_combo.value.full_name == "tiny-em@0"
    assert list(widget.class_checkboxes) == ["mitochondria", "membranes"]
    run_and_wait(qtbot, widget)
    assert labels_names(viewer) == ["mitochondria", "membranes"]


# ---------------------------------------------------------------------- fluorescence


def test_each_channel_layer_is_segmented_for_its_organelle(make_napari_viewer, qtbot,
                                                           messages):
    viewer = make_napari_viewer()
    dapi = viewer.add_image(cells_image((96, 96), seed=3), name="DAPI", scale=(2.0, 2.0))
    viewer.add_image(cells_image((96, 96), seed=4), name="C2", scale=(2.0, 2.0),
                     metadata={"organelle": "mitochondria", "modality": "fluorescence"})
    viewer.add_image(cells_image((96, 96), seed=5), name="brightfield", scale=(2.0, 2.0))
    widget = make_widget(viewer)
    choose_model(widget, "tiny-fluo")

    assert widget.fluorescence_mode
    # from the dye's name, from the layer's metadata, and nothing for brightfield
    assert widget.channel_assignments == {"brightfield": None, "C2": "mitochondria",
                                          "DAPI": "nuclei"}
    run_and_wait(qtbot, widget)

    assert sorted(labels_names(viewer)) == ["mitochondria", "nuclei"]
    nuclei, mitochondria = viewer.layers["nuclei"], viewer.layers["mitochondria"]
    assert nuclei.metadata[METADATA_KEY]["source"] == "DAPI"
    assert mitochondria.metadata[METADATA_KEY]["source"] == "C2"
    assert nuclei.data.dtype == np.uint16 and mitochondria.data.dtype == np.uint8
    np.testing.assert_array_equal(nuclei.scale, dapi.scale)
    assert sorted(widget.last_result.labels) == ["mitochondria", "nuclei"]
    assert not messages.errors


def test_an_organelle_assigned_to_two_channels_is_refused(make_napari_viewer, qtbot,
                                                          messages):
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((64, 64)), name="ch0")
    viewer.add_image(cells_image((64, 64)), name="ch1")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-fluo")
    assert widget.channel_assignments == {"ch1": None, "ch0": None}

    run_and_wait(qtbot, widget)
    assert "Say which organelle each channel shows" in messages.errors[-1]

    widget.channel_combos["ch0"].value = "nuclei"
    widget.channel_combos["ch1"].value = "nuclei"
    run_and_wait(qtbot, widget)
    assert "Nuclei is assigned to ch1 and ch0" in messages.errors[-1]
    assert labels_names(viewer) == []


def test_the_form_follows_the_model_and_the_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32)), name="DAPI")
    widget = make_widget(viewer)

    choose_model(widget, "tiny-em")
    assert not widget.fluorescence_mode
    assert list(widget.class_checkboxes) == ["mitochondria", "membranes"]
    assert widget.tile_size_spin.value == 128  # the card's tile size

    choose_model(widget, "tiny-fluo")
    assert widget.fluorescence_mode
    assert list(widget.channel_combos) == ["DAPI"]

    viewer.add_image(np.zeros((32, 32)), name="Tom20")  # new channel layer: new row
    viewer.layers["DAPI"].name = "Hoechst"  # renamed: its row follows
    assert widget.channel_assignments == {"Tom20": "mitochondria", "Hoechst": "nuclei"}
    assert [layer.name for layer in widget.image_combo.choices] == ["Tom20", "Hoechst"]


# ---------------------------------------------------------------------- shared plumbing


def failing_work(error: Exception):
    yield Progress(1, 2, "half way")
    raise error


@pytest.mark.parametrize(("error", "expected"), [
    (InputError("the image is blank"), "The image is blank"),
    # superqt drops RuntimeErrors raised by a generator; they must still be reported
    (RuntimeError("CUDA error: device-side assert triggered\nmore lines"),
     "Segmentation failed with an unexpected error (RuntimeError: CUDA error: device-side "
     "assert triggered); the full traceback is in the log."),
    (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"),
     "Segmentation ran out of GPU memory: use smaller tiles or batches, or choose the CPU "
     "device."),
], ids=["user-error", "runtime-error", "gpu-out-of-memory"])
def test_task_errors_become_one_message(qtbot, notifications, error, expected):
    # Not the messages fixture: this checks that the message really reaches napari.
    controls = TaskControls()
    qtbot.addWidget(controls.native)
    results = []

    controls.start(failing_work(error), task="Segmentation", on_returned=results.append)
    qtbot.waitUntil(lambda: not controls.running, timeout=10_000)

    assert [str(n.message) for n in notifications if n.severity == "error"] == [expected]
    assert controls.status_label.value == f"Error: {expected}"
    assert results == [] and controls.run_button.enabled
    assert not [n for n in notifications if isinstance(n, ErrorNotification)]


# ---------------------------------------------------------------------- larger than memory


def test_a_lazy_image_too_large_for_memory_is_segmented_blockwise_into_its_ome_zarr(
        make_napari_viewer, qtbot, tmp_path, monkeypatch, tracebacks):
    import napari_organelle.blockwise as blockwise
    from napari_organelle.inference import segment
    from napari_organelle.models import load_model
    from napari_organelle.ngff import read_labels, write_ngff_image

    path = tmp_path / "big.ome.zarr"
    pixels = cells_image((192, 256), seed=3)
    write_ngff_image(path, pixels, axes="YX", pixel_size_nm=8.0, chunks=64, n_levels=2)
    # Every lazy image is "too large": the dock must take the blockwise path.
    monkeypatch.setattr(blockwise, "MEMORY_SHARE", 0.0)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-organelle")
    assert image.multiscale
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    widget.image_combo.value = image

    run_and_wait(qtbot, widget)

    assert widget.controls.last_error is None and not tracebacks
    mitochondria, membranes = viewer.layers["mitochondria"], viewer.layers["membranes"]
    for layer in (mitochondria, membranes):
        data = layer.data[0] if layer.multiscale else layer.data
        assert hasattr(data, "dask"), "blockwise results are shown lazily"
        assert data.shape == (192, 256)
        np.testing.assert_array_equal(layer.scale, image.scale)
    written = read_labels(path)
    assert sorted(written) == ["membranes", "mitochondria"]
    model = load_model(widget.model_combo.value.path)
    expected = segment(pixels, model, tile_size=widget.tile_size_spin.value,
                       overlap=widget.overlap_spin.value)
    got = np.asarray(written["mitochondria"].data)
    want = expected.labels["mitochondria"]
    assert np.array_equal(got > 0, want > 0)
    pairs = np.unique(np.stack([got[got > 0], want[want > 0]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
    np.testing.assert_array_equal(np.asarray(written["membranes"].data),
                                  expected.labels["membranes"])
    assert "written to big.ome.zarr/labels" in widget.status_label.value


def test_a_lazy_image_too_large_for_memory_and_not_from_ome_zarr_is_refused(
        make_napari_viewer, qtbot, messages, monkeypatch):
    import dask.array as da

    import napari_organelle.blockwise as blockwise

    monkeypatch.setattr(blockwise, "MEMORY_SHARE", 0.0)
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(cells_image((128, 128)), chunks=64), name="lazy")
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")

    run_and_wait(qtbot, widget)

    assert len(messages.errors) == 1
    assert "too large to segment in memory and was not opened from an OME-Zarr" in \
        messages.errors[0]
    assert labels_names(viewer) == []


def test_uncertainty_maps_are_added_as_image_layers(make_napari_viewer, qtbot, tracebacks):
    viewer = make_napari_viewer()
    image = viewer.add_image(cells_image((128, 128)), name="em", scale=(2.0, 2.0))
    widget = make_widget(viewer)
    choose_model(widget, "tiny-em")
    widget.image_combo.value = image
    widget.uncertainty_check.value = True

    run_and_wait(qtbot, widget)

    assert widget.controls.last_error is None and not tracebacks
    names = [layer.name for layer in widget.last_uncertainty_layers]
    assert names == ["mitochondria uncertainty", "membranes uncertainty"]
    for layer in widget.last_uncertainty_layers:
        assert layer.data.shape == (128, 128) and layer.data.dtype == np.float32
        assert 0 <= layer.data.min() and layer.data.max() <= 1
        np.testing.assert_array_equal(layer.scale, image.scale)
    assert widget.last_result.settings["tta"] is True
    run_and_wait(qtbot, widget)  # again: the maps are updated, not added twice
    assert sum(layer.name.endswith("uncertainty") for layer in viewer.layers) == 2


# ---------------------------------------------------------------------- evidence per class


def test_each_class_says_how_it_was_tested_and_simulation_only_ones_are_marked(
        make_napari_viewer, tmp_path):
    card = tiny_card("tiny-evidence", "em", [ClassSpec("mitochondria", "instance"),
                                             ClassSpec("cell_boundary", "semantic"),
                                             ClassSpec("er", "semantic")])
    card.metrics = {"validation": {"er": 0.5},
                    "test": {"em-drosophila-vnc": {"mitochondria": {"dice": 0.8802},
                                                   "membranes": {"dice": 0.8457}},
                             "simulated-test": {"er": {"dice": 0.7}}}}
    card.extra["class_evidence"] = {"er": "simulation only"}
    folder = save_model((card, build_network(card)), tmp_path / "tiny-evidence")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32)), name="cell")
    widget = make_widget(viewer)
    widget.load_model_file(folder)

    boxes = widget.class_checkboxes
    assert list(boxes) == ["mitochondria", "cell_boundary", "er"]  # names stay the keys
    assert boxes["mitochondria"].text == "mitochondria"
    assert "tested on em-drosophila-vnc: Dice 0.88" in boxes["mitochondria"].tooltip
    assert "em-drosophila-vnc: Dice 0.85" in boxes["cell_boundary"].tooltip  # as 'membranes'
    assert boxes["er"].text == "er (simulation only)"
    assert "simulation only: no real test data" in boxes["er"].tooltip
    assert widget.selected_classes == ["mitochondria", "cell_boundary", "er"]

    # One-channel fluorescence models show it in each channel's organelle list.
    card.name, card.modality = "tiny-evidence-fluo", "fluorescence"
    folder = save_model((card, build_network(card)), tmp_path / "tiny-evidence-fluo")
    widget.load_model_file(folder)
    combo = widget.channel_combos["cell"]
    texts = [combo.native.itemText(i) for i in range(combo.native.count())]
    assert texts[1:] == ["mitochondria", "cell_boundary", "er (simulation only)"]
    combo.value = "er"
    assert widget.channel_assignments == {"cell": "er"}
    tip = combo.native.itemData(3, Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("er: simulation only")


def test_an_empty_simulation_only_class_is_told_not_warned_about(
        make_napari_viewer, qtbot, tmp_path, messages):
    """Nuclei found nowhere in neuropil is often the right answer for a class learnt from
    simulation; an empty real-tested class still gets the warning."""
    import torch

    card = tiny_card("tiny-sim-empty", "em", [ClassSpec("mitochondria", "semantic"),
                                              ClassSpec("membranes", "semantic"),
                                              ClassSpec("er", "semantic")])
    card.extra["class_evidence"] = {"er": "simulation only"}
    network = build_network(card)
    with torch.no_grad():  # mitochondria everywhere, membranes and ER nowhere
        head = network.segmentation_head[0]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([10.0, -10.0, -10.0]))
    folder = save_model((card, network), tmp_path / "tiny-sim-empty")
    viewer = make_napari_viewer()
    viewer.add_image(cells_image((96, 96)), name="cell")
    widget = make_widget(viewer)
    widget.load_model_file(folder)

    widget.class_checkboxes["membranes"].value = False
    run_and_wait(qtbot, widget)
    assert "No er found in this image." in messages.infos
    assert not any("Nothing was found" in message for message in messages.warnings)

    widget.class_checkboxes["membranes"].value = True
    run_and_wait(qtbot, widget)
    assert any(message.startswith("Nothing was found for membranes, er")
               for message in messages.warnings)
