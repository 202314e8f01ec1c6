"""docs/backbones.md's "Adding a backbone" example is real: its code block, run as the module it names (in a
subprocess, so the registry of this test run stays as shipped), registers a backbone that the registry,
the weights loader and the index builder accept."""
import pathlib
import re
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent('''
    import importlib.util, pathlib, sys
    import numpy as np, torch
    import vpr_node.core.backbones as backbones
    code = pathlib.Path(sys.argv[1]).read_text()
    name = "vpr_node.core.backbones.resnet18_gem"
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    mod.__package__ = "vpr_node.core.backbones"
    sys.modules[name] = mod
    exec(compile(code, "resnet18_gem.py", "exec"), mod.__dict__)

    from vpr_node.core.backbones import available_backbones, create_backbone
    from vpr_node.core.errors import ConfigurationError
    assert "resnet18_gem" in available_backbones()
    try:
        create_backbone("resnet18_gem")
        raise SystemExit("a backbone without weights was accepted")
    except ConfigurationError as exc:
        assert "vpr train --backbone resnet18_gem" in str(exc)
    model = create_backbone("resnet18_gem", require_weights=False, input_size=128)
    frame = (np.random.default_rng(0).random((360, 640, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        d = model(model.preprocessor(frame))
    assert d.shape == (1, 512) and abs(float(d.norm()) - 1) < 1e-5
    out = pathlib.Path(sys.argv[2])
    torch.save(model.state_dict(), out / "resnet18_gem.pt")
    again = create_backbone("resnet18_gem", weights=str(out / "resnet18_gem.pt"), input_size=128)
    assert again.weights_sha256 == model.weights_sha256

    from vpr_node.core.indexing.index_build import build_index_for
    from vpr_node.core.indexing.settings import BuildSettings
    from vpr_node.core.maps.procedural import write_sample_map
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.maps.tiles import TileCorpus
    from vpr_node.core.maps.tiling import cut_tiles
    maps = write_sample_map(out / "map", seed=2, size_px=400)
    cut_tiles(load_corner_table(maps), out / "corpus", tile_m=60.0, overlap=0.5, tile_px=128, progress=False)
    m = build_index_for("resnet18_gem", TileCorpus(out / "corpus"), out / "index", BuildSettings(rotations=1),
                        weights=str(out / "resnet18_gem.pt"), backbone_options={"input_size": 128}, progress=False)
    assert m["backbone_label"] == "resnet18_gem" and m["descriptor_dim"] == 512
    print("ok")
''')


def test_the_documented_add_a_backbone_example_works(tmp_path):
    doc = (REPO / "docs" / "backbones.md").read_text()
    section = doc[doc.index("## Adding a backbone"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block.startswith("# vpr_node/core/backbones/resnet18_gem.py")
    (tmp_path / "resnet18_gem.py").write_text(block)
    (tmp_path / "driver.py").write_text(DRIVER)
    out = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "resnet18_gem.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout[-2000:] + out.stderr[-3000:]
