"""Map imagery and its tiles: geodesy, the camera's ground footprint, map sources (corner tables, GeoTIFF,
XYZ), tile plans, the tile corpus and its table, procedural maps."""
