"""Channels on real screens: the channel mapping (which layer feeds each model channel), the
WSCNN Infer tab on a field stored one TIFF per channel (layers and folder), the shift
warnings, and no GUI message that names a command-line flag."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from screens import CHANNELS, PATTERNS, brighter

from napari_rarepheno._widgets._channels import ChannelMap
from napari_rarepheno._widgets.wscnn_dock import WSCNNDock
from napari_rarepheno.core.errors import InputError

pytestmark = pytest.mark.gui


def meta_of(names=None, n=2, channels=None, patterns=None):
    from napari_rarepheno.core.io.modelfile import ModelMeta

    training = {"input": {"channel_files": patterns}} if patterns else {}
    return ModelMeta("wscnn", {"in_channels": n}, ["negative", "positive"], channels=channels,
                     channel_names=names, training=training)


def add_field(viewer, mitosis_field, order=(1, 0), names=None):
    """The bundled field as one layer per channel, named like the files (tubulin file first)."""
    names = names or mitosis_field["names"]
    for c in order:
        viewer.add_image(mitosis_field["field"][c], name=names[c])
    return names


def test_mapping_defaults_by_pattern_then_name_then_order(make_napari_viewer, mitosis_field):
    viewer = make_napari_viewer()
    h2b, tub = add_field(viewer, mitosis_field)  # tubulin's layer first: order alone would swap them
    cmap = ChannelMap(viewer)
    assert cmap.rows == [] and not cmap.shown  # no model, nothing to choose

    # the model trained on _Crfp/_Cgfp files finds each channel's layer by that pattern
    cmap.set_model(meta_of(CHANNELS, patterns=PATTERNS))
    assert cmap.names == CHANNELS and [r.label for r in cmap.rows] == ["H2B channel", "tubulin channel"] and cmap.shown
    assert [r.value for r in cmap.rows] == [h2b, tub]
    assert set(cmap.rows[0].choices) == {h2b, tub}
    mapped = cmap.build()
    assert mapped.chw.shape == (2, 1040, 1392) and mapped.chw.dtype == np.uint8
    assert np.array_equal(mapped.chw[0], mitosis_field["field"][0])
    assert mapped.layers[0].name == h2b and mapped.name == "tubulin_P0040_T00001_Z1_S1"  # the token taken out

    # without patterns, only names: "tubulin" is in both file names (no help), "H2B" in none -> layer order
    cmap.set_model(meta_of(CHANNELS))
    assert [r.value for r in cmap.rows] == [tub, h2b]
    # a name that says it: renaming refreshes the defaults
    viewer.layers[h2b].name = "H2B_P0040_Crfp"
    assert [r.value for r in cmap.rows] == ["H2B_P0040_Crfp", tub]
    assert cmap.build().name == "H2B_P0040_Crfp"  # no pattern to take out: the first layer's name

    # a user's choice stays (and follows a rename); a removed layer falls back to the default
    cmap.rows[1].value = "H2B_P0040_Crfp"
    viewer.add_image(np.zeros((1040, 1392), np.uint8), name="other")
    assert cmap.rows[1].value == "H2B_P0040_Crfp" and "other" in cmap.rows[1].choices
    with pytest.raises(InputError, match="both read 'H2B_P0040_Crfp'"):
        cmap.build()
    viewer.layers["H2B_P0040_Crfp"].name = "nuclei"
    assert cmap.rows[0].value == "nuclei" and cmap.rows[1].value == "nuclei"
    viewer.layers.remove("nuclei")  # defaults again: "tubulin" now names one layer, H2B takes the next
    assert cmap.rows[0].value == "other" and cmap.rows[1].value == tub
    viewer.add_image(np.zeros((100, 100), np.uint8), name="small")
    cmap.rows[1].value = "small"
    with pytest.raises(InputError, match="differ in size"):
        cmap.build()
    cmap.disconnect_viewer()


def test_mapping_offers_the_channels_of_a_multichannel_layer(make_napari_viewer, mitosis_field):
    viewer = make_napari_viewer()
    rgb = np.zeros((64, 80, 3), np.uint8)
    rgb[..., 1] = 7
    viewer.add_image(np.zeros((64, 80), np.uint16), name="gray")
    cmap = ChannelMap(viewer)
    cmap.set_model(meta_of(["channel 0"], n=1))
    assert not cmap.shown  # one channel, one-channel layers: nothing to choose
    viewer.add_image(rgb, name="mosaic", rgb=True)
    assert cmap.shown and set(cmap.rows[0].choices) == {"gray", "mosaic [0]", "mosaic [1]", "mosaic [2]"}
    # a model trained on channels [1, 2] of RGB files: the selected RGB layer's channels 1 and 2
    cmap.set_model(meta_of(["tubulin", "H2B"], channels=[1, 2]))
    viewer.layers.selection.active = viewer.layers["mosaic"]
    assert [r.value for r in cmap.rows] == ["mosaic [1]", "mosaic [2]"]
    mapped = cmap.build()
    assert mapped.chw.shape == (2, 64, 80) and mapped.chw[0].max() == 7 and mapped.name == "mosaic"
    # layers of different bit depths are each scaled to [0, 1]
    cmap.rows[1].value = "gray"
    assert cmap.build().chw.dtype == np.float32
    cmap.disconnect_viewer()


@pytest.fixture
def infer_2ch(make_napari_viewer, qtbot, wscnn_2ch, mitosis_field):
    viewer = make_napari_viewer()
    dock = WSCNNDock(viewer)
    viewer.window.add_dock_widget(dock, name="WSCNN")
    dock.load_model(wscnn_2ch)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    return viewer, dock


def test_infer_a_field_stored_one_tiff_per_channel(infer_2ch, qtbot, mitosis_field, monkeypatch):
    from napari.utils import notifications

    viewer, dock = infer_2ch
    panel = dock.infer
    warned = []
    monkeypatch.setattr(notifications, "show_warning", lambda msg: warned.append(msg))
    h2b, tub = add_field(viewer, mitosis_field)
    assert panel.channels.names == CHANNELS and panel.channels.shown
    assert [r.value for r in panel.channels.rows] == [h2b, tub]
    viewer.layers.selection.active = viewer.layers[tub]  # a one-channel layer: still the mapped pair
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert panel.state.value == "done", panel.job.error
    name = "tubulin_P0040_T00001_Z1_S1"
    sal = viewer.layers[f"{name} saliency"]
    assert sal.data.shape == (1040, 1392) and f"{name} objects" in viewer.layers
    assert list(panel.images.columns) == ["image", "p_positive", "called", "objects", "segmented", "brightness",
                                          "size_ratio"]
    row = dict(zip(panel.images.columns, panel.images.rows[0]))
    assert row["image"] == name and abs(row["brightness"] - 1) < 0.1 and abs(row["size_ratio"] - 1) < 0.1
    assert not panel.shift_note.messages and not panel.shift_note.visible and not warned  # like its training

    # the same field 2x brighter: said in the panel and as a napari warning; the table has it
    for c, lay in ((0, h2b), (1, tub)):
        viewer.layers[lay].data = brighter(mitosis_field["field"][c])
    panel.run_btn.native.click()
    assert not panel.shift_note.messages  # cleared when the run starts
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert any("brighter" in m for m in panel.shift_note.messages) and "brighter" in panel.shift_note.value
    assert not panel.shift_note.native.isHidden()
    assert any("brighter" in m for m in warned)
    assert panel.images.column("brightness")[0] > 1.8
    panel.images.sort_by("brightness", descending=True)
    assert panel.images.sort_key == ("brightness", True)


def test_localisation_fast_by_default_gradient_on_request_progress_per_tile(infer_2ch, qtbot, mitosis_field,
                                                                             monkeypatch):
    """Infer localises with the class maps (forward only) unless gradient saliency is asked for;
    a tiled field reports its progress tile by tile; the GUI thread does no segmentation."""
    import threading

    from napari_rarepheno._widgets import wscnn_results
    from napari_rarepheno.core.inference import predict

    viewer, dock = infer_2ch
    panel = dock.infer
    add_field(viewer, mitosis_field)
    assert panel.localisation.value == "class maps (fast)" and panel.saliency_mode() == "cam"
    calls, segmented_in = [], []
    real_predict, real_prepare = predict.predict_wscnn, wscnn_results.prepare_segmentation
    monkeypatch.setattr(predict, "predict_wscnn",
                        lambda *a, **kw: calls.append(kw) or real_predict(*a, **kw))
    monkeypatch.setattr(wscnn_results, "prepare_segmentation",
                        lambda *a, **kw: segmented_in.append(threading.current_thread()) or real_prepare(*a, **kw))
    monkeypatch.setattr("napari_rarepheno._widgets.wscnn_infer.prepare_segmentation",
                        wscnn_results.prepare_segmentation)
    shown = []
    real_update = panel.progress.update
    monkeypatch.setattr(panel.progress, "update", lambda p: shown.append(p) or real_update(p))

    def run():
        panel.run_btn.native.click()
        qtbot.waitUntil(lambda: panel.worker is None, timeout=120_000)
        assert panel.state.value == "done", panel.job.error

    run()
    assert calls[-1]["saliency_mode"] == "cam" and calls[-1]["tile"] is None
    assert segmented_in and threading.main_thread() not in segmented_in
    name = "tubulin_P0040_T00001_Z1_S1"
    fast = viewer.layers[f"{name} saliency"].data.copy()

    panel.localisation.value = "gradient saliency (precise)"
    panel.tile.value = 512
    shown.clear()
    run()
    assert calls[-1]["saliency_mode"] == "map" and calls[-1]["tile"] == 512
    tiles = [p for p in shown if "tile" in p.message]
    n = tiles[-1].n_batches
    assert n > 1 and [p.batch for p in tiles] == list(range(1, n + 1))
    assert all(0 < p.fraction <= 1 for p in tiles) and tiles[-1].fraction == 1
    assert "tile" in panel.progress.bar.format() or panel.progress.bar.format().startswith("done")
    precise = viewer.layers[f"{name} saliency"].data
    assert precise.shape == fast.shape and not np.allclose(precise, fast)


def test_the_rows_follow_the_model(infer_2ch, qtbot, wscnn_model, mitosis_field):
    viewer, dock = infer_2ch
    form = dock.infer.form
    add_field(viewer, mitosis_field)
    assert [w.label for w in form][1:3] == ["H2B channel", "tubulin channel"]  # right under "run on"
    dock.load_model(wscnn_model)  # one channel: one row, hidden (one-channel layers: nothing to choose)
    qtbot.waitUntil(lambda: dock.model.meta.input_names() == ["channel 0"], timeout=30_000)
    assert [w.label for w in form].count("channel 0") == 1 and "H2B channel" not in [w.label for w in form]
    assert not dock.infer.channels.shown and form[1].label == "channel 0" and form[1].native.isHidden()
    assert dock.infer.channel_files.value == ""  # this model was trained on one file per image


def test_a_one_channel_model_still_runs_each_selected_layer(make_napari_viewer, qtbot, wscnn_model, positive_image):
    viewer = make_napari_viewer()
    dock = WSCNNDock(viewer)
    dock.load_model(wscnn_model)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    viewer.add_image(positive_image, name="a")
    viewer.add_image(positive_image[::-1].copy(), name="b")
    panel = dock.infer
    assert not panel.channels.shown
    viewer.layers.selection = {viewer.layers["a"], viewer.layers["b"]}
    assert [n for n, _, _ in panel.layer_inputs()] == ["a", "b"]
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert "a saliency" in viewer.layers and "b saliency" in viewer.layers and len(panel.images.rows) == 2


def test_infer_a_folder_of_per_channel_files(infer_2ch, qtbot, mitosis_field, tmp_path):
    viewer, dock = infer_2ch
    panel = dock.infer
    field = mitosis_field["field"]
    folder = tmp_path / "plate"
    folder.mkdir()
    for i, (y, x) in enumerate([(0, 0), (500, 700), (300, 200)]):
        piece = field[:, y:y + 400, x:x + 500]
        piece = brighter(piece) if i == 2 else piece
        for c, token in enumerate(PATTERNS):
            tifffile.imwrite(folder / f"well{i}{token}_s1.tif", piece[c])
    panel.source.value = "a folder of images"
    assert not panel.channels.shown and panel.channel_files.value == "_Crfp,_Cgfp"  # the model's patterns
    panel.folder.path = folder
    assert panel.folder.hint.value.startswith("3 image(s) of 2 channel files each")
    (folder / "well9_Crfp_s1.tif").write_bytes((folder / "well0_Crfp_s1.tif").read_bytes())
    panel.channel_files.value = "_Crfp, _Cgfp"
    assert "not usable" in panel.folder.hint.value and "unpaired" in panel.folder.hint.value
    (folder / "well9_Crfp_s1.tif").unlink()
    panel.channel_files.value = "_Crfp,_Cgfp"
    panel.out.path = tmp_path / "pred"
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert panel.state.value == "done", panel.job.error
    names = panel.images.column("image")
    assert sorted(names) == ["well0_s1", "well1_s1", "well2_s1"]
    bright = dict(zip(names, panel.images.column("brightness")))
    assert bright["well2_s1"] > 1.5 > bright["well0_s1"]
    assert (tmp_path / "pred" / "shift.json").exists()
    assert not panel.shift_note.native.isHidden() and any("well2_s1" in m for m in panel.shift_note.messages)


def test_gui_messages_name_no_command_line_flags(infer_2ch, monkeypatch):
    from napari_rarepheno import _workers
    from napari_rarepheno.core.errors import CHOOSE_CHANNELS

    msg = _workers.error_message(InputError("the model expects 2 channel(s) but the image has 1; " + CHOOSE_CHANNELS))
    assert "--" not in msg and "channel mapping" in msg
    for text in ("use --tile 512 (or smaller)", "use tiled prediction (rarepheno predict --tile) for such fields",
                 "use --device auto or cpu", "give --val VAL, --group-regex or --val-split random"):
        assert "--" not in _workers.error_message(InputError(text))
    # a model of two channels and a viewer with one layer: the message says what to do here
    viewer, dock = infer_2ch
    shown = []
    monkeypatch.setattr(_workers, "notify_error", lambda exc, context="": shown.append(_workers.error_message(exc)))
    viewer.add_image(np.zeros((80, 80), np.uint8), name="only")
    dock.infer.run_btn.native.click()
    assert shown and "map each channel to its own layer" in shown[-1] and "--" not in shown[-1]
