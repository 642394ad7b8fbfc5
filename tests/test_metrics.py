"""dlcourse.metrics: top-k accuracy against a hand-computed example and scikit-learn."""
import pytest
import torch
from sklearn.metrics import top_k_accuracy_score

from dlcourse.metrics import accuracy, num_correct, topk_accuracy

# 4 examples, 3 classes. Ranking of classes per row (best first):
#   row 0: 2, 0, 1   label 2 -> top1 hit
#   row 1: 0, 1, 2   label 1 -> top2 hit
#   row 2: 1, 2, 0   label 0 -> top3 hit only
#   row 3: 1, 0, 2   label 1 -> top1 hit
LOGITS = torch.tensor([[0.2, 0.1, 0.7],
                       [2.0, 1.0, -1.0],
                       [-3.0, 5.0, 4.0],
                       [0.5, 0.9, 0.1]])
Y = torch.tensor([2, 1, 0, 1])


def test_hand_computed_example():
    assert accuracy(LOGITS, Y).item() == 0.5
    assert accuracy(LOGITS, Y, k=2).item() == 0.75
    assert accuracy(LOGITS, Y, k=3).item() == 1.0
    assert num_correct(LOGITS, Y, ks=(1, 2, 3)).tolist() == [2, 3, 4]


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_against_sklearn(k):
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(300, 10, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    expected = top_k_accuracy_score(y.numpy(), logits.numpy(), k=k, labels=list(range(10)))
    assert accuracy(logits, y, k=k).item() == pytest.approx(expected, abs=1e-7)
    assert topk_accuracy(logits, y, ks=(k,))[f"top{k}"].item() == pytest.approx(expected, abs=1e-7)


def test_topk_accuracy_returns_tensors_keyed_by_k():
    result = topk_accuracy(LOGITS, Y, ks=(1, 2))
    assert set(result) == {"top1", "top2"}
    assert result["top1"].item() == 0.5 and result["top2"].item() == 0.75


def test_result_stays_on_the_device_without_reading_it():
    # On the "meta" device a tensor has no values: .item() would raise, so this proves no sync.
    logits, y = LOGITS.to("meta"), Y.to("meta")
    acc = accuracy(logits, y)
    assert acc.device.type == "meta" and acc.dim() == 0 and acc.dtype == torch.float32
    assert num_correct(logits, y, ks=(1, 2)).shape == (2,)
    assert topk_accuracy(logits, y, ks=(1, 3))["top3"].device.type == "meta"


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        accuracy(torch.randn(4), Y)
    with pytest.raises(ValueError, match=r"y must have shape \(N,\)"):
        accuracy(LOGITS, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"y must have shape"):
        accuracy(LOGITS, Y[:, None])
    with pytest.raises(TypeError, match="integer class indices"):
        accuracy(LOGITS, Y.float())
    with pytest.raises(ValueError, match="larger than the number of classes C=3"):
        accuracy(LOGITS, Y, k=5)
    with pytest.raises(ValueError, match="larger than the number of classes"):
        topk_accuracy(LOGITS, Y)                      # default ks=(1, 5) with 3 classes
    with pytest.raises(ValueError, match="positive integer"):
        accuracy(LOGITS, Y, k=0)
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.empty(0, 3), torch.empty(0, dtype=torch.long))
    with pytest.raises(TypeError, match="tensors"):
        accuracy(LOGITS.tolist(), Y)
