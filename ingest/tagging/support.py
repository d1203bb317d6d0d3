"""How strongly a tag's counted statements support it: in the title, in MeSH or publication
types, or in enough text sentences. Shared by the design rules and the other resolution rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tagger import Evidence

TEXT_SOURCES = ("title", "abstract")
STRUCTURED_SOURCES = ("mesh", "publication_type")


class Support:
    """Queries over one study's supported evidence, by tag id."""

    def __init__(self, supported: dict[str, list[Evidence]]):
        self.supported = supported

    def title(self, tag_id: str) -> bool:
        return any(e.source == "title" for e in self.supported.get(tag_id, []))

    def structured(self, tag_id: str) -> bool:
        return any(e.source in STRUCTURED_SOURCES for e in self.supported.get(tag_id, []))

    def text(self, tag_id: str, min_count: int = 1) -> bool:
        return sum(1 for e in self.supported.get(tag_id, []) if e.source in TEXT_SOURCES) >= min_count
