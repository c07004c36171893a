"""Report renderers: one small class per format behind :class:`Renderer` (see ``base``)."""

from reports.render.interface import (
    CSV_KINDS,
    FORMATS,
    CsvKind,
    Renderer,
    format_for_path,
    get_renderer,
)

__all__ = ["CSV_KINDS", "FORMATS", "CsvKind", "Renderer", "format_for_path", "get_renderer"]
