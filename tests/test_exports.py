"""MEDLINE (.nbib) and RIS parsers."""

from ingest.sources.files import parse_medline, parse_ris, sniff_format, split_inline_sections


def test_sniff_format():
    assert sniff_format(b'<?xml version="1.0"?><PubmedArticleSet/>') == "xml"
    assert sniff_format(b"\xef\xbb\xbfPMID- 123\nTI  - x\n") == "medline"
    assert sniff_format(b"TY  - JOUR\nTI  - x\nER  - \n") == "ris"
    assert sniff_format(b"pmid,title\n1,x\n") is None


def test_medline_full_record(fixtures):
    result = parse_medline((fixtures / "pubmed" / "export.nbib").read_bytes())
    assert result.errors == []
    first, second = result.records
    assert first["pmid"] == 39000001
    assert first["title"].startswith(
        "Intranasal esketamine in treatment-resistant depression: a randomized, double-blind")
    assert first["journal"] == (
        "Neuropsychopharmacology : official publication of the American College of Neuropsychopharmacology")
    assert (first["year"], first["pub_date"]) == (2024, "2024-08")
    assert first["doi"] == "10.1038/s41386-024-01855-x"
    assert [s["label"] for s in first["abstract_sections"]] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert [a["last_name"] for a in first["authors"]] == ["Nguyen", "O'Brien", None]
    assert first["authors"][0]["affiliations"] == ["Department of Psychiatry, University of Example, Leeds, UK."]
    assert first["authors"][0]["initials"] == "TM"
    assert first["authors"][2]["collective_name"] == "ESKETINTRANASAL Study Group"
    assert first["nct_ids"] == ["NCT03434041"]
    ketamine = next(m for m in first["mesh"] if m["descriptor"] == "Ketamine")
    assert ketamine["major"] is False
    assert ketamine["qualifiers"] == [
        {"ui": None, "name": "adverse effects", "major": True},
        {"ui": None, "name": "therapeutic use", "major": False},
    ]
    trd = next(m for m in first["mesh"] if m["descriptor"].startswith("Depressive"))
    assert trd["major"] is True
    assert {"ui": None, "name": "Ketamine", "registry_number": "690G0D6V8H"} in first["chemicals"]
    assert first["comments_corrections"] == [{
        "ref_type": "CommentIn", "pmid": 39000099,
        "source": "Neuropsychopharmacology. 2024 Aug;49(9):1399-1400.", "note": None}]
    assert second["authors"][0]["orcid"] == "0000-0001-2345-6789"
    assert second["pmcid"] == "PMC9876543"
    assert second["pub_date"] == "2022-11-03"
    assert second["comments_corrections"][0]["ref_type"] == "ErratumIn"


def test_medline_record_without_pmid_is_reported():
    result = parse_medline(b"PMID- 12\nTI  - ok\n\nPMID- x1\nTI  - bad\n")
    assert [r["pmid"] for r in result.records] == [12]
    assert "record 2" in result.errors[0]


def test_medline_free_text_dates_kept():
    result = parse_medline(b"PMID- 12\nDP  - 1990 May-Jun\nTI  - t\n")
    record = result.records[0]
    assert (record["year"], record["pub_date"], record["medline_date"]) == (1990, "1990-05", "1990 May-Jun")


def test_ris_records(fixtures):
    result = parse_ris((fixtures / "pubmed" / "export.ris").read_bytes())
    first, second = result.records
    assert first["pmid"] == 36000004 and first["doi"] == "10.1093/pm/pnac999"
    assert [a["last_name"] for a in first["authors"]] == ["Smith", "Jones"]
    assert first["keywords"] == ["ketamine", "neuropathic pain", "opioid-sparing"]
    assert (first["volume"], first["issue"], first["pages"]) == ("23", "11", "1880-1887")
    assert second["pmid"] is None and second["doi"] == "10.1089/jpm.2020.0001"
    assert second["nct_ids"] == ["NCT01234567"]
    assert second["pub_date"] == "2021-03-15"  # RIS dates are YYYY/MM/DD/
    assert len(result.errors) == 1 and "neither a PMID nor a DOI" in result.errors[0]


def test_ris_unterminated_record_reported():
    result = parse_ris(b"TY  - JOUR\nTI  - x\nAN  - 123456\n")
    assert result.records == [] and "no closing" in result.errors[0]


def test_split_inline_sections_ignores_scale_abbreviations():
    sections = split_inline_sections("OBJECTIVE: Test. METHODS: Scores (HAM-D: 12) fell. RESULTS: Good.")
    assert [s["label"] for s in sections] == ["OBJECTIVE", "METHODS", "RESULTS"]
    assert sections[1]["text"] == "Scores (HAM-D: 12) fell."
