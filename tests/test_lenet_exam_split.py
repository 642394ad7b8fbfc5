"""03_lenet's hidden suite measures the student's trained network on an exam set: the odd-numbered
images of the digits' test split. No cell of the notebook may ever see them."""
import torch

from dlcourse.data import get_datasets


def test_exam_set_is_disjoint_from_the_notebooks_data():
    """The odd-numbered test images (the exam) share no image with train, validation or the even test half.

    Compared by pixels, so that a duplicate scan in scikit-learn's digits would be caught too; the
    data are loaded exactly as the notebook's set-up does (offline digits at 32x32, seed 0), once
    with the small run's training subset and once with every training image (the "large" run).
    """
    for train_size in (1200, None):
        train_ds, val_ds, test_ds, _ = get_datasets("digits", image_size=32, train_size=train_size, seed=0)
        train_base = train_ds.dataset.images
        seen = torch.cat([train_base[train_ds.indices], train_base[val_ds.indices], test_ds.images[0::2]])
        exam = test_ds.images[1::2]
        assert len(exam) == 180
        seen_keys = {bytes(x.flatten().tolist()) for x in seen}
        shared = sum(bytes(x.flatten().tolist()) in seen_keys for x in exam)
        assert shared == 0, f"{shared} exam images also appear in the notebook's train/val/test data"


def _suite(monkeypatch):
    """The hidden suite's module (imported by path: suites are not a package; its @points marks are
    the grader plugin's, so they are made no-ops here)."""
    import importlib.util
    from pathlib import Path

    import autograder.testing
    monkeypatch.setattr(autograder.testing, "points", lambda n, cell=None: (lambda f: f))

    path = Path(__file__).resolve().parents[1] / "autograder" / "suites" / "03_lenet" / "test_lenet.py"
    spec = importlib.util.spec_from_file_location("lenet_suite_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _NoInfo:
    """A `student` whose notebook has no usable `info`: the exam uses the release's settings."""

    def get(self, name):
        raise KeyError(name)


def test_the_grader_exam_cannot_be_looked_up_and_changes_every_grading(monkeypatch):
    """No distorted exam image equals a raw image of the data set (so a table of the raw images' labels
    finds nothing), two gradings get different exams, and an untrained LeNet-5 run in the grader's own
    forward scores about chance on it."""
    suite = _suite(monkeypatch)
    X1, y1 = suite.exam_set(_NoInfo(), seed=1)
    X2, y2 = suite.exam_set(_NoInfo(), seed=2)
    assert X1.shape == (180 * suite.EXAM_COPIES, 1, 32, 32) and torch.equal(y1, y2) and len(y1) == len(X1)
    assert not torch.allclose(X1, X2)
    _, _, test_ds, info = get_datasets("digits", image_size=32, train_size=1200, seed=0)
    raw = (test_ds.images.float() / 255 - info.mean[0]) / info.std[0]                   # (360, 1, 32, 32)
    nearest = torch.cdist(X1.flatten(1), raw.flatten(1)).min(dim=1).values
    assert float(nearest.min()) > 1.0, "a distorted exam image is (nearly) a raw image of the test split"
    torch.manual_seed(0)
    untrained = suite.lenet_parameters(torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(6, 16, 5), torch.nn.Linear(400, 120), torch.nn.Linear(120, 84),
        torch.nn.Linear(84, 10)).state_dict())
    acc = float((suite.lenet_forward(untrained, X1, "ReLU", "max").argmax(1) == y1).double().mean())
    assert acc < 0.3


def test_the_grader_lenet_is_torchs_on_every_variant(monkeypatch):
    """lenet_forward with the parameters of an nn.Module LeNet-5 computes what that module computes
    (torch's own layers are the oracle), for each activation and pooling, and matching_lenet finds it."""
    suite = _suite(monkeypatch)
    nn = torch.nn
    X = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    acts = {"ReLU": nn.ReLU, "tanh": nn.Tanh, "GELU": nn.GELU}
    pools = {"max": nn.MaxPool2d, "average": nn.AvgPool2d}
    for a, act in acts.items():
        for p, pool in pools.items():
            torch.manual_seed(1)
            net = nn.Sequential(nn.Conv2d(1, 6, 5), act(), pool(2), nn.Conv2d(6, 16, 5), act(), pool(2), nn.Flatten(),
                                nn.Linear(400, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10)).eval()
            params = suite.lenet_parameters(net.state_dict())
            with torch.no_grad():
                Y = net(X).double()
            assert torch.allclose(suite.lenet_forward(params, X, a, p).double(), Y, atol=1e-4)
            assert suite.matching_lenet(params, X, torch.log_softmax(Y, 1)) is not None
