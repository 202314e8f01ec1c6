"""The matchers the verifier can use, one module each, behind one registry (like the backbones): classic detectors
against the index's tile images (`sift` = RootSIFT, `orb`, `akaze`) and learned matchers against windows of map
features prepared before flight (`xfeat` = XFeat + LighterGlue, `xfeat-mnn` = XFeat with mutual nearest neighbours,
`aliked` = ALIKED-n16rot + LightGlue). Modules are imported on first use, so a verifier running SIFT or an exported
XFeat never imports PyTorch. Adding a matcher: one module with a `Matcher` subclass and one line here."""
from __future__ import annotations

import importlib

from vpr_node.core.errors import ConfigurationError

# name -> (module, class, fixed keyword arguments)
MATCHERS = {
    "sift": ("classic", "ClassicMatcher", {"name": "sift"}),
    "orb": ("classic", "ClassicMatcher", {"name": "orb"}),
    "akaze": ("classic", "ClassicMatcher", {"name": "akaze"}),
    "xfeat": ("xfeat", "XFeatMatcher", {"match_mode": "lighterglue"}),
    "xfeat-mnn": ("xfeat", "XFeatMatcher", {"match_mode": "mnn"}),
    "aliked": ("aliked", "AlikedMatcher", {}),
}
MAP_SOURCE = {"sift": "tiles", "orb": "tiles", "akaze": "tiles", "xfeat": "windows", "xfeat-mnn": "windows",
              "aliked": "windows"}
# the matcher whose extractor made a matcher's map features (xfeat-mnn matches XFeat features too)
FEATURES_OF = {"xfeat-mnn": "xfeat"}


def check_name(name: str, allow_empty: bool = False) -> str | None:
    if (allow_empty and name == "") or name in MATCHERS:
        return None
    return f"choose one of {', '.join(MATCHERS)}" + (" (or '' for none)" if allow_empty else "")


def make_matcher(name: str, **options):
    """A matcher by registry name; `options` are the class's keyword arguments (max_features, ratio, runtime, ...),
    those it does not take are ignored."""
    if name not in MATCHERS:
        raise ConfigurationError(f"unknown matcher {name!r}: {check_name(name)}", parameter="matcher")
    module, cls, fixed = MATCHERS[name]
    klass = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    import inspect

    takes = inspect.signature(klass.__init__).parameters
    return klass(**{k: v for k, v in options.items() if k in takes}, **fixed)
