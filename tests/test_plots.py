"""dlcourse.plots: the figures hold what they claim (axes, labels, plotted values, image pixels)."""
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dlcourse.plots import plot_history, show_feature_maps, show_filters, show_images  # noqa: E402
from dlcourse.training import History  # noqa: E402

RED, BLACK = to_rgba("red"), to_rgba("black")


def rendered(fig):
    """Render to PNG (catches errors that only appear at draw time) and return the figure."""
    assert isinstance(fig, Figure)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue().startswith(b"\x89PNG")
    return fig


def pixels(ax):
    return np.asarray(ax.images[0].get_array())


# ------------------------------------------------------------------------------------------------

def test_plot_history_draws_train_and_validation_side_by_side():
    history = History(train_loss=[2.0, 1.2, 0.9], val_loss=[2.1, 1.5, 1.4],
                      train_acc=[0.3, 0.6, 0.7], val_acc=[0.25, 0.5, 0.55])
    fig = rendered(plot_history(history))
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_position().x0 < acc_ax.get_position().x0            # side by side, loss first
    for ax, metric, ylabel in ((loss_ax, "loss", "loss"), (acc_ax, "acc", "accuracy")):
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == ylabel and ylabel in ax.get_title()
        (train, val) = ax.get_lines()
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]
        assert list(train.get_xdata()) == [1, 2, 3]
        assert list(train.get_ydata()) == history[f"train_{metric}"]
        assert list(val.get_ydata()) == history[f"val_{metric}"]


def test_plot_history_skips_what_was_not_measured():
    history = History(train_loss=[1.0, 0.5], lr=[0.1, 0.01])               # no validation, no accuracy
    fig = rendered(plot_history(history))
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 1 and ax.get_title() == "loss"
    (ax,) = plot_history(history, metrics=("lr",)).axes
    assert ax.get_ylabel() == "learning rate" and list(ax.get_lines()[0].get_ydata()) == [0.1, 0.01]
    with pytest.raises(ValueError, match="no values for metrics"):
        plot_history(history, metrics=("acc",))


def test_show_images_unnormalises_grey_images_and_marks_wrong_predictions():
    torch.manual_seed(0)
    raw = torch.rand(10, 1, 6, 6)                                           # pixels in [0, 1]
    mean, std = (0.3,), (0.2,)
    X = (raw - 0.3) / 0.2                                                  # what a loader yields
    labels = torch.arange(10) % 3
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 2, 2, 0, 1, 1, 0]), 3).float()
    classes = ("cat", "dog", "bird")
    fig = rendered(show_images(X, labels, logits, classes, ncols=4, mean=mean, std=std))
    assert len(fig.axes) == 10                                             # unused grid cells removed
    assert max(ax.get_subplotspec().rowspan.stop for ax in fig.axes) == 3  # 4 + 4 + 2
    for i, ax in enumerate(fig.axes):
        np.testing.assert_allclose(pixels(ax), raw[i, 0].numpy(), atol=1e-6)
        assert ax.images[0].get_cmap().name == "gray"
    wrong = [i for i in range(10) if logits[i].argmax() != labels[i]]
    assert wrong == [4, 8]                                                 # labels 1, 2 predicted as 2, 1
    for i, ax in enumerate(fig.axes):
        title = ax.title
        if i in wrong:
            assert title.get_text() == f"{classes[logits[i].argmax()]}\ntrue: {classes[labels[i]]}"
            assert to_rgba(title.get_color()) == RED and ax.spines["left"].get_visible()
        else:
            assert title.get_text() == classes[labels[i]] and to_rgba(title.get_color()) == BLACK


def test_show_images_rgb_and_uint8():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (3, 3, 5, 7), dtype=np.uint8)                   # (N, C, H, W) uint8
    fig = rendered(show_images(X, labels=[0, 1, 2]))
    assert [ax.get_title() for ax in fig.axes] == ["0", "1", "2"]
    for i, ax in enumerate(fig.axes):
        np.testing.assert_allclose(pixels(ax), X[i].transpose(1, 2, 0) / 255, atol=1e-6)   # (H, W, 3)
    mean, std = (0.5, 0.4, 0.3), (0.1, 0.2, 0.3)
    raw = torch.rand(2, 3, 4, 4)
    X = (raw - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    fig = show_images(X, mean=mean, std=std)
    np.testing.assert_allclose(pixels(fig.axes[1]), raw[1].permute(1, 2, 0).numpy(), atol=1e-6)


def test_show_images_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="C = 1 or 3"):
        show_images(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        show_images(torch.zeros(2, 1, 4, 4), labels=[0, 1, 2])


def test_show_filters_rescales_each_rgb_filter():
    conv = torch.nn.Conv2d(3, 5, 3)
    fig = rendered(show_filters(conv))
    assert len(fig.axes) == 5 and "5x3x3x3" in fig.get_suptitle()
    W = conv.weight.detach().numpy()
    for o, ax in enumerate(fig.axes):
        w = W[o].transpose(1, 2, 0)                                           # (kH, kW, 3)
        np.testing.assert_allclose(pixels(ax), (w - w.min()) / (w.max() - w.min()), atol=1e-6)
        assert ax.get_title() == str(o)


def test_show_filters_grey_kernels_and_cap():
    W = torch.randn(4, 2, 3, 3)
    fig = rendered(show_filters(W, ncols=4))
    assert [ax.get_title() for ax in fig.axes] == [f"{o},{i}" for o in range(4) for i in range(2)]
    k = W[2, 1].numpy()
    np.testing.assert_allclose(pixels(fig.axes[5]), (k - k.min()) / (k.max() - k.min()), atol=1e-6)
    fig = show_filters(torch.randn(3, 4, 3, 3), max_filters=6)
    assert len(fig.axes) == 6 and "first 6 of 12" in fig.get_suptitle()
    with pytest.raises(ValueError, match="C_out, C_in, kH, kW"):
        show_filters(torch.randn(3, 3, 3))


def test_show_feature_maps_shows_each_channel_as_is():
    maps = torch.randn(1, 6, 5, 4)
    fig = rendered(show_feature_maps(maps, ncols=3))
    assert len(fig.axes) == 6 and "6x5x4" in fig.get_suptitle()
    for c, ax in enumerate(fig.axes):
        np.testing.assert_allclose(pixels(ax), maps[0, c].numpy())
        assert ax.get_title() == f"channel {c}"
    with pytest.raises(ValueError, match="one example"):
        show_feature_maps(torch.randn(2, 6, 5, 4))


def test_figures_are_not_left_open_in_pyplot():
    before = plt.get_fignums()
    plot_history({"train_loss": [1.0]})
    show_images(torch.rand(2, 1, 3, 3))
    show_filters(torch.randn(2, 1, 3, 3))
    show_feature_maps(torch.randn(2, 3, 3))
    assert plt.get_fignums() == before                                     # nothing to plt.close()
