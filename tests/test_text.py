from lxml import etree

from ingest.records.text import (
    element_text,
    html_to_text,
    iso_date,
    nct_ids_in,
    normalise_doi,
    normalise_pmcid,
    parse_free_date,
)


def test_element_text_keeps_word_boundaries():
    el = etree.fromstring("<A>measured in <i>Rattus</i> at baseline; R<sup>2</sup> = 0.4</A>")
    assert element_text(el) == "measured in Rattus at baseline; R2 = 0.4"


def test_element_text_collapses_whitespace_and_handles_none():
    assert element_text(etree.fromstring("<A>  two\n   lines </A>")) == "two lines"
    assert element_text(None) == ""


def test_html_to_text_separates_blocks_and_unescapes():
    text = html_to_text("<h4>Background</h4><p>Ketamine&nbsp;is <i>fast</i>.</p><p>Next</p>")
    assert text == "Background Ketamine is fast. Next"


def test_parse_free_date_medline_forms():
    assert parse_free_date("1990 May-Jun") == (1990, "1990-05")
    assert parse_free_date("2007 Spring") == (2007, "2007-03")
    assert parse_free_date("1998 Dec-1999 Jan") == (1998, "1998-12")
    assert parse_free_date("2000-2001") == (2000, "2000")
    assert parse_free_date("2019 Nov 3") == (2019, "2019-11-03")
    assert parse_free_date("no date") == (None, None)


def test_iso_date_month_names_and_numbers():
    assert iso_date("2024", "Aug", "15") == (2024, "2024-08-15")
    assert iso_date("2024", "08", None) == (2024, "2024-08")
    assert iso_date("2024", None, None) == (2024, "2024")
    assert iso_date(None, "Aug", None) == (None, None)


def test_identifiers_normalised():
    assert nct_ids_in("see NCT01234567 and nct 01234567 and NCT7654321") == ["NCT01234567"]
    assert normalise_doi("https://doi.org/10.1038/S41386-024-01855-X.") == "10.1038/s41386-024-01855-x"
    assert normalise_doi("not a doi") is None
    assert normalise_pmcid("PMC123") == "PMC123"
    assert normalise_pmcid("123") == "PMC123"
