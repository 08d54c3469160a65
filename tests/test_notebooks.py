"""The research notebooks run top to bottom (fast mode) and render their figures."""


import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import DATA, REPO

NOTEBOOKS = REPO / "notebooks"
NEEDS = {
    "01_quickstart.ipynb": ["dicom/siemens-xa30-enhanced"],
    "02_training_and_evaluation.ipynb": ["brain/fs-training"],
    "03_onnx_integration.ipynb": ["dicom/siemens-xa30-enhanced"],
    "04_spine_composing.ipynb": ["spine/sct-testing"],
    "05_preprocessing.ipynb": [],  # the XA30 T1 when present, else nilearn's ICBM152
    "06_dicom_results.ipynb": ["brain/fs-training"],
}
MODELS = {"04_spine_composing.ipynb": [], "05_preprocessing.ipynb": ["skullstrip_attention_unet"]}


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_notebook_runs(name, tmp_path, monkeypatch):
    for part in NEEDS[name]:
        if not (DATA / part).exists():
            pytest.skip(f"needs shared data {part}")
    for model in MODELS.get(name, ["cc_attention_unet"]):
        if not (REPO / "models" / f"{model}.json").exists():
            pytest.skip(f"no shipped model {model}")
    monkeypatch.setenv("MEDSEG_FAST", "1")
    monkeypatch.setenv("MEDSEG_DATA", str(DATA))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{name} rendered no figure"
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
