"""Field-by-field merging of records of one study."""

from ingest.records.merge import merge_records
from ingest.sources.files import parse_medline
from ingest.sources.pubmed import parse_pubmed_xml


def _pair(fixtures):
    xml = {r["pmid"]: r for r in parse_pubmed_xml((fixtures / "pubmed" / "efetch_cases.xml").read_bytes()).records}
    nbib = {r["pmid"]: r for r in parse_medline((fixtures / "pubmed" / "export.nbib").read_bytes()).records}
    return xml[39000001], nbib[39000001]


def test_merge_keeps_every_field_and_richer_values(fixtures):
    xml, nbib = _pair(fixtures)
    for merged in (merge_records(xml, nbib), merge_records(nbib, xml)):
        # Structured XML abstract (with NlmCategory) beats the flattened MEDLINE one.
        assert merged["abstract_sections"] == xml["abstract_sections"]
        # The more precise date wins.
        assert merged["pub_date"] == "2024-08-15"
        # Unions: MeSH "Humans" only in MEDLINE; keyword "ketamine" only in MEDLINE.
        descriptors = [m["descriptor"] for m in merged["mesh"]]
        assert "Humans" in descriptors and "Administration, Intranasal" in descriptors
        assert set(merged["keywords"]) == {"esketamine", "ketamine", "N-methyl-D-aspartate",
                                           "rapid-acting antidepressant"}
        assert "Research Support, Non-U.S. Gov't" in [p["name"] for p in merged["publication_types"]]
        assert "Multicenter Study" in [p["name"] for p in merged["publication_types"]]
        # MeSH UI from XML survives; major flags are OR-ed across sources.
        ketamine = next(m for m in merged["mesh"] if m["descriptor"] == "Ketamine")
        assert ketamine["descriptor_ui"] == "D007649" and ketamine["major"] is True
        assert next(q for q in ketamine["qualifiers"] if q["name"] == "adverse effects")["major"] is True
        assert merged["pmcid"] == "PMC11111111"
        assert merged["nct_ids"] == ["NCT03434041", "NCT04338321"] or set(merged["nct_ids"]) == {
            "NCT03434041", "NCT04338321"}
        assert merged["authors"][0]["orcid"] == "0000-0002-1825-0097"
        assert len(merged["authors"][0]["affiliations"]) == 2
        assert set(merged["sources"]) == {"pubmed", "medline"}
        assert merged["pmid_version"] == 1
        assert len(merged["comments_corrections"]) == 2


def test_newer_version_replaces_older_outright():
    old = {"pmid": 1, "pmid_version": 1, "title": "Old longer title here", "keywords": ["a"], "sources": ["x"]}
    new = {"pmid": 1, "pmid_version": 2, "title": "New", "keywords": [], "sources": ["y"]}
    for merged in (merge_records(old, new), merge_records(new, old)):
        assert merged["title"] == "New" and merged["keywords"] == [] and merged["pmid_version"] == 2
        assert set(merged["sources"]) == {"x", "y"}


def test_merge_does_not_mutate_inputs(fixtures):
    xml, nbib = _pair(fixtures)
    before = repr(xml), repr(nbib)
    merge_records(xml, nbib)
    assert (repr(xml), repr(nbib)) == before
