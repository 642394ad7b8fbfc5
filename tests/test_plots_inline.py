"""In a fresh Jupyter kernel, the first figure a dlcourse plot returns shows as a picture, once."""
import nbclient
import nbformat
import pytest


@pytest.mark.slow
def test_first_figure_in_a_fresh_kernel_is_a_png():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import dlcourse as dl\n"
        "dl.plot_history({'train_loss': [1.0, 0.5], 'val_loss': [1.1, 0.7],"
        " 'train_acc': [0.5, 0.8], 'val_acc': [0.4, 0.7]})")]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    outputs = nb.cells[0].outputs
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1, [o.get("data", {}).keys() for o in outputs]
