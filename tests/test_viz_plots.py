"""The teaching plots of cnnlite.viz: figures with the right parts, the right numbers behind
them, PNG files, errors that name the function, and measurements that leave the model alone."""
import numpy as np
import pytest

import cnnlite as cl
from cnnlite import nn
from cnnlite.errors import OpError
from cnnlite.optim import SGD, lr_scheduler
from cnnlite.reference.conv import im2col
from cnnlite.train import History
from cnnlite.viz import (layer_statistics, plot_confusion_matrix, plot_feature_maps,
                         plot_filters, plot_history, plot_im2col, plot_layer_statistics,
                         plot_lr_schedule)
from cnnlite.viz.plots import confusion_matrix

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def two_layer_model(rng):
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    for param in model.parameters():
        param.data = rng.standard_normal(param.shape)
    return model


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def images_of(figure_axes):
    return [axes.images[0].get_array() for axes in figure_axes]


# --- PNG files ---------------------------------------------------------------------------------

def _history():
    history = History()
    history.append(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.1, val_acc=0.4)
    history.append(epoch=2, train_loss=0.5, train_acc=0.8, val_loss=0.7, val_acc=0.6)
    return history


PLOTS = {
    "history": lambda path: plot_history(_history(), path=path),
    "lr_schedule": lambda path: plot_lr_schedule(lambda t: 0.1 * 0.9 ** t, 20, path=path),
    "confusion": lambda path: plot_confusion_matrix([0, 1, 1], [0, 1, 0], path=path),
    "filters": lambda path: plot_filters(np.ones((4, 3, 3, 3)), path=path),
    "feature_maps": lambda path: plot_feature_maps(np.ones((2, 5, 5)), path=path),
    "im2col": lambda path: plot_im2col(np.arange(16).reshape(1, 1, 4, 4), 3, path=path),
    "layer_statistics": lambda path: plot_layer_statistics(
        layer_statistics(two_layer_model(np.random.default_rng(1)), np.ones((2, 5))),
        histograms=False, path=path),
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_writes_a_png_and_returns_its_figure(tmp_path, name):
    from matplotlib.figure import Figure

    path = tmp_path / "sub" / f"{name}.png"
    figure = PLOTS[name](path)
    assert isinstance(figure, Figure)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over


# --- plot_filters ------------------------------------------------------------------------------

def test_rgb_filters_are_one_mosaic_of_tiles_each_normalised_on_its_own(rng):
    weight = rng.standard_normal((5, 3, 4, 4))
    figure = plot_filters(cl.tensor(weight), ncols=3)
    (axes,) = figure.axes
    assert len(axes.images) == 1 and "normalised on its own" in axes.get_title()
    mosaic = axes.images[0].get_array()
    assert mosaic.shape == (2 * 5 - 1, 3 * 5 - 1, 4)  # 2 rows, 3 columns, 1-pixel gaps
    tile = mosaic[5:9, 5:9, :3]  # filter 4: row 1, column 1
    expected = weight[4].transpose(1, 2, 0)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(tile, expected)
    assert (mosaic[4, :, 3] == 0).all() and (mosaic[:, 4, 3] == 0).all()  # transparent gaps
    assert (mosaic[5:9, 10:14, 3] == 0).all()  # no sixth filter: empty cell


@pytest.mark.parametrize("channels, reduce", [("mean", lambda w: w.mean(axis=1)),
                                              (1, lambda w: w[:, 1])])
def test_grey_filters_show_the_mean_or_one_input_channel(rng, channels, reduce):
    weight = rng.standard_normal((2, 4, 3, 3))
    layer = nn.Conv2d(4, 2, 3)
    layer.weight.data = weight
    mosaic = plot_filters(layer, channels=channels).axes[0].images[0].get_array()
    grey = reduce(weight)[1]
    expected = (grey - grey.min()) / (grey.max() - grey.min())
    for colour in range(3):
        np.testing.assert_allclose(mosaic[:, 4:7, colour], expected)


def test_rgb_falls_back_to_the_mean_for_other_channel_counts():
    assert "mean of 4 input channels" in plot_filters(np.ones((2, 4, 3, 3))).axes[0].get_title()


@pytest.mark.parametrize("weight, channels, message", [
    (np.ones((3, 4)), "rgb", r"plot_filters: expected weights of shape \(out, in, kh, kw\), "
                             r"got \(3, 4\)"),
    (np.ones((2, 3, 3, 3)), 3, r"plot_filters: channels"),
    (np.ones((2, 3, 3, 3)), "red", r"plot_filters: channels must be"),
])
def test_plot_filters_refuses_bad_input_by_name(weight, channels, message):
    with pytest.raises(OpError, match=message):
        plot_filters(weight, channels=channels)


# --- plot_feature_maps -------------------------------------------------------------------------

def test_feature_maps_of_an_array_one_titled_axes_per_channel(rng):
    maps = rng.standard_normal((1, 5, 6, 7))
    figure = plot_feature_maps(maps, max_maps=3)
    assert [axes.get_title() for axes in figure.axes] == ["0", "1", "2"]
    for c, image in enumerate(images_of(figure.axes)):
        np.testing.assert_array_equal(image, maps[0, c])
    assert "the first 3" in figure._suptitle.get_text()


def test_feature_maps_of_a_layer_are_its_output_and_leave_no_hook(rng):
    model = small_cnn()
    model.train()
    image = rng.standard_normal((3, 6, 6)).astype(np.float32)
    figure = plot_feature_maps(model, image, "2")
    model.eval()  # plot_feature_maps measures one image in evaluation mode
    with cl.no_grad():
        expected = model[2](model[1](model[0](cl.tensor(image[None])))).data[0]
    model.train()
    assert len(figure.axes) == 4
    for c, shown in enumerate(images_of(figure.axes)):
        np.testing.assert_allclose(shown, expected[c], rtol=1e-6)
    assert all(not module._forward_hooks for module in model.modules())
    assert all(module.training for module in model.modules())


@pytest.mark.parametrize("call, message", [
    (lambda m: plot_feature_maps(m, np.ones((3, 6, 6)), "nope"), "has no layer 'nope'"),
    (lambda m: plot_feature_maps(m, np.ones((3, 6, 6)), "5"), r"got \(1, 3\)"),
    (lambda m: plot_feature_maps(m, np.ones((2, 3, 6, 6)), "0"), r"one image .* got \(2, 3"),
    (lambda m: plot_feature_maps(m), "give the image and the layer"),
    (lambda m: plot_feature_maps(np.ones((4, 4))), r"\(C, H, W\) .* got \(4, 4\)"),
])
def test_plot_feature_maps_refuses_bad_input_by_name(call, message):
    with pytest.raises(OpError, match="plot_feature_maps: .*" + message):
        call(small_cnn())


# --- layer_statistics --------------------------------------------------------------------------

def test_layer_statistics_equal_a_hand_computation(rng):
    model = two_layer_model(rng)
    x = rng.standard_normal((6, 5))
    stats = layer_statistics(model, x)
    w1, b1, w2, b2 = (p.data for p in model.parameters())
    hidden = x @ w1.T + b1
    out = np.maximum(hidden, 0) @ w2.T + b2
    grad_out = np.ones_like(out)  # loss = out.sum()
    grad_hidden = (grad_out @ w2) * (hidden > 0)
    assert [(row.name, row.kind, row.shape) for row in stats] == [
        ("0", "Linear", (6, 4)), ("2", "Linear", (6, 3))]
    for row, act, grad in zip(stats, [hidden, out], [grad_hidden, grad_out]):
        np.testing.assert_allclose([row.act_mean, row.act_std, row.act_var],
                                   [act.mean(), act.std(), act.var()], rtol=1e-12)
        np.testing.assert_allclose([row.grad_mean, row.grad_std, row.grad_var],
                                   [grad.mean(), grad.std(), grad.var()], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(row.activations, act)
        np.testing.assert_allclose(row.gradients, grad, rtol=1e-12)


def test_layer_statistics_differentiate_a_given_loss(rng):
    model = two_layer_model(rng)
    x = rng.standard_normal((6, 5))
    stats = layer_statistics(model, x, layers=["2"], loss_fn=lambda y: (y * y).sum())
    (row,) = stats
    np.testing.assert_allclose(row.gradients, 2 * row.activations, rtol=1e-12)


def test_layer_statistics_leave_hooks_grads_parameters_and_buffers_alone(rng):
    model = small_cnn()
    grads = {}
    for name, param in model.named_parameters():
        if name != "0.bias":  # one parameter without a gradient: it must stay None
            param.grad = rng.standard_normal(param.shape).astype(np.float32)
            grads[name] = (param.grad, param.grad.copy())
    before = {name: value.copy() for name, value in model.state_dict().items()}
    stats = layer_statistics(model, rng.standard_normal((4, 3, 6, 6)).astype(np.float32))
    assert [row.name for row in stats] == ["0", "3", "5"]
    assert all(row.grad_var is not None for row in stats)
    for name, param in model.named_parameters():
        if name in grads:
            assert param.grad is grads[name][0]
            np.testing.assert_array_equal(param.grad, grads[name][1])
        else:
            assert param.grad is None
    for name, value in model.state_dict().items():  # parameters and BN's running statistics
        np.testing.assert_array_equal(value, before[name])
    assert all(not module._forward_hooks for module in model.modules())


def test_layer_statistics_without_backward_measure_activations_only(rng):
    stats = layer_statistics(small_cnn(), rng.standard_normal((2, 3, 6, 6)), backward=False)
    assert all(row.grad_var is None and row.gradients is None for row in stats)
    text = str(stats)
    assert "act var" in text and "grad var" not in text and text.count("\n") == 3
    html = stats._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 4


def test_layer_statistics_refuse_bad_input_by_name(rng):
    model = two_layer_model(rng)
    with pytest.raises(OpError, match=r"layer_statistics: .*no layers \['9'\]"):
        layer_statistics(model, np.ones((2, 5)), layers=["9"])
    with pytest.raises(OpError, match=r"layer_statistics: loss_fn must return a one-element "
                                      r"Tensor, got \(2, 3\)"):
        layer_statistics(model, np.ones((2, 5)), loss_fn=lambda y: y)
    with pytest.raises(OpError, match=r"Linear\(5->4\)|layer_statistics|\(2, 7\)"):
        layer_statistics(model, np.ones((2, 7)))
    assert all(not module._forward_hooks for module in model.modules())


def test_plot_layer_statistics_axes_before_and_after(rng):
    model = two_layer_model(rng)
    x = rng.standard_normal((8, 5))
    before = layer_statistics(model, x)
    nn.init.lsuv_init(model, x)
    after = layer_statistics(model, x)
    figure = plot_layer_statistics(before, after)
    assert len(figure.axes) == 2 + 2 * 2  # two variance plots, two rows of two histograms
    activation_axes = figure.axes[0]
    assert activation_axes.get_yscale() == "log"
    assert "activations" in activation_axes.get_title()
    assert [line.get_label() for line in activation_axes.lines] == ["before", "after",
                                                                    "variance 1"]
    np.testing.assert_allclose(activation_axes.lines[1].get_ydata(),
                               [row.act_var for row in after])
    assert len(after.plot(histograms=False).axes) == 2
    assert len(layer_statistics(model, x, backward=False).plot().axes) == 1 + 2


def test_plot_layer_statistics_refuses_mismatched_statistics(rng):
    model = two_layer_model(rng)
    stats = layer_statistics(model, np.ones((2, 5)))
    with pytest.raises(OpError, match="plot_layer_statistics: stats has 2 layers, other 1"):
        plot_layer_statistics(stats, layer_statistics(model, np.ones((2, 5)), layers=["0"]))
    with pytest.raises(TypeError, match="plot_layer_statistics: stats"):
        plot_layer_statistics([1, 2])


# --- plot_lr_schedule --------------------------------------------------------------------------

def test_lr_schedule_of_a_scheduler_does_not_step_it():
    optimizer = SGD([nn.Parameter(np.zeros(2, np.float32))], lr=0.1)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    figure = plot_lr_schedule(scheduler, 10)
    (line,) = figure.axes[0].lines
    np.testing.assert_allclose(line.get_ydata(), [scheduler.lr_at(t)[0] for t in range(10)])
    assert scheduler.iteration == 0 and optimizer.param_groups[0]["lr"] == 0.1


def test_lr_schedules_of_a_dict_share_one_axis():
    optimizer = SGD([nn.Parameter(np.zeros(2, np.float32))], lr=0.1)
    figure = plot_lr_schedule({"step": lr_scheduler.StepLR(optimizer, step_size=3),
                               "halving": lambda t: 0.5 ** t}, 6)
    (axes,) = figure.axes
    assert [line.get_label() for line in axes.lines] == ["step", "halving"]
    np.testing.assert_allclose(axes.lines[1].get_ydata(), 0.5 ** np.arange(6))
    assert axes.get_legend() is not None


@pytest.mark.parametrize("schedule, steps, message", [
    (lambda t: 0.1, 0, "plot_lr_schedule: steps"),
    (lambda t: 0.1, 2.5, "plot_lr_schedule: steps must be"),
    (lambda t: "fast", 3, "plot_lr_schedule: schedule .* returned str"),
    (0.1, 3, "plot_lr_schedule: expected an LRScheduler"),
])
def test_plot_lr_schedule_refuses_bad_input_by_name(schedule, steps, message):
    with pytest.raises(OpError, match=message):
        plot_lr_schedule(schedule, steps)


# --- confusion matrix --------------------------------------------------------------------------

def test_confusion_matrix_counts_a_hand_made_example():
    y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 2, 0, 2, 2]
    expected = np.array([[1, 1, 0],
                         [0, 2, 1],
                         [1, 0, 3]])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), expected)
    assert confusion_matrix(y_true, y_pred).dtype == np.int64
    np.testing.assert_array_equal(confusion_matrix([0], [1], num_classes=3),
                                  [[0, 1, 0], [0, 0, 0], [0, 0, 0]])


def test_plot_confusion_matrix_shows_counts_or_row_rates_in_the_cells():
    y_true = [0, 0, 1, 1, 1, 2]
    scores = np.eye(3)[[0, 1, 1, 1, 2, 2]]  # (N, K) scores: the argmax is the prediction
    figure = plot_confusion_matrix(y_true, scores, classes=["cat", "dog", "eel"])
    axes = figure.axes[0]
    assert len(figure.axes) == 2  # the matrix and its colour bar
    np.testing.assert_array_equal(axes.images[0].get_array(), [[1, 1, 0], [0, 2, 1],
                                                               [0, 0, 1]])
    assert [text.get_text() for text in axes.texts][:3] == ["1", "1", "0"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["cat", "dog", "eel"]
    assert axes.get_ylabel() == "true class"
    rates = plot_confusion_matrix(y_true, scores, normalize=True).axes[0]
    np.testing.assert_allclose(rates.images[0].get_array(), [[0.5, 0.5, 0], [0, 2 / 3, 1 / 3],
                                                             [0, 0, 1]])
    assert rates.texts[4].get_text() == "0.67"


def test_confusion_matrix_from_a_model_and_a_loader(rng):
    model = nn.Sequential(nn.Linear(2, 2))
    model.train()
    model[0].weight.data = np.eye(2, dtype=np.float32)
    model[0].bias.data = np.zeros(2, np.float32)
    loader = [(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 0])),
              (np.array([[0, 2]], np.float32), np.array([1]))]
    figure = plot_confusion_matrix.from_model(model, loader)
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), [[1, 1], [0, 1]])
    assert model.training


@pytest.mark.parametrize("y_true, y_pred, classes, message", [
    ([0, 1], [0], None, r"one label per sample, got \(2,\) and \(1,\)"),
    ([0, 3], [0, 1], ["a", "b"], "label 3 is out of range for 2 classes"),
    ([[[0]]], [0], None, r"expected y_true of shape \(N,\)"),
    ([0, -1], [0, 1], None, "negative class -1"),
])
def test_confusion_matrix_refuses_bad_labels_by_name(y_true, y_pred, classes, message):
    with pytest.raises(OpError, match="confusion_matrix: .*" + message):
        plot_confusion_matrix(y_true, y_pred, classes=classes)


# --- plot_im2col -------------------------------------------------------------------------------

def test_im2col_panel_is_the_librarys_column_matrix():
    x = np.arange(16).reshape(1, 1, 4, 4)
    figure = plot_im2col(x, 3)
    assert len(figure.axes) == 2  # the input, the matrix
    matrix = figure.axes[1].images[0].get_array()
    np.testing.assert_array_equal(matrix, im2col(x.astype(np.float64), 3, 3, (1, 1), (0, 0),
                                                 (1, 1)))
    assert "(9, 4)" in figure._suptitle.get_text()
    (field,), (column,) = figure.axes[0].patches, figure.axes[1].patches
    assert field.get_xy() == (-0.5, -0.5) and (field.get_width(), field.get_height()) == (3, 3)
    assert column.get_xy() == (-0.5, -0.5) and column.get_height() == 9
    assert field.get_edgecolor() == column.get_edgecolor()


def test_im2col_with_padding_stride_and_channels_outlines_the_chosen_column():
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)  # (C, H, W): one sample
    figure = plot_im2col(cl.tensor(x), 2, stride=2, padding=1, highlight=3)
    assert len(figure.axes) == 3  # two channels, the matrix
    matrix = figure.axes[2].images[0].get_array()
    np.testing.assert_array_equal(matrix, im2col(x[None].astype(np.float64), 2, 2, (2, 2),
                                                 (1, 1), (1, 1)))
    assert matrix.shape == (8, 4)
    (field,) = figure.axes[0].patches  # column 3 = output (1, 1): padded rows/cols 2..3
    assert field.get_xy() == (1.5, 1.5)
    assert figure.axes[1].patches[0].get_xy() == (1.5, 1.5)
    assert figure.axes[2].patches[0].get_xy() == (2.5, -0.5)


@pytest.mark.parametrize("x, kwargs, message", [
    (np.ones(5), {}, r"expected x of shape \(H, W\), \(C, H, W\) or \(N, C, H, W\), got \(5,\)"),
    (np.array([["a", "b"], ["c", "d"]]), {}, r"expected x of numbers .*, got dtype <U1"),
    (np.ones((2, 2)), {}, "does not fit"),
    (np.ones((1, 1, 20, 20)), {}, r"\(9, 324\) column matrix"),
    (np.ones((4, 4)), {"highlight": 4}, "highlight"),
])
def test_plot_im2col_refuses_bad_input_by_name(x, kwargs, message):
    with pytest.raises(OpError, match="plot_im2col: .*" + message):
        plot_im2col(x, 3, **kwargs)
