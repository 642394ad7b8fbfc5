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
