"""The developer benchmarks: the maps in ../shared/data, the query protocols, recall over configurations and
backbones, and the cached work folders they share with the demo."""
