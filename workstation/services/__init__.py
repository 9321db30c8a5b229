"""Services that tie the index, the DICOM layer and (later) the engine together. No Qt."""

from workstation.services.studies import (
    SeriesSource,
    demo_study,
    import_result_json,
    load_series_volumes,
    resolve_for_analysis,
    resolve_series,
    series_json,
)

__all__ = [
    "SeriesSource",
    "demo_study",
    "import_result_json",
    "load_series_volumes",
    "resolve_for_analysis",
    "resolve_series",
    "series_json",
]
