"""The tagger: vocabulary, evidence sentences, negation, design rules, sample size."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.cli import cli
from ingest.tagging import VocabularyError, load_vocabulary, tag_record
from ingest.tagging.matching import keyed
from ingest.tagging.negation import is_negated

ISSUE_TAGS = {
    "indication": ["trd", "mdd", "bipolar_depression", "postpartum_depression", "suicidal_ideation", "ptsd", "ocd",
                   "anxiety", "substance_use", "chronic_pain", "crps", "fibromyalgia", "acute_pain", "anaesthesia",
                   "procedural_sedation", "status_epilepticus", "asthma", "agitation", "palliative_depression"],
    "mechanism": ["nmda_antagonism", "glutamate_surge", "ampa", "mtor", "bdnf_trkb", "synaptogenesis",
                  "gaba_disinhibition", "lateral_habenula", "opioid", "hcn1", "inflammation", "monoamine",
                  "metabolites_hnk", "eef2"],
    "side_effect": ["dissociation", "hallucinations", "psychotomimetic", "sedation", "dizziness", "nausea_vomiting",
                    "headache", "blood_pressure", "tachycardia", "respiratory_depression", "emergence",
                    "cognitive_impairment", "cystitis", "hepatotoxicity", "abuse", "death"],
    "design": ["meta_analysis", "systematic_review", "rct", "nonrandomised_trial", "single_arm_trial",
               "secondary_analysis", "cohort", "case_control", "case_series", "case_report", "narrative_review",
               "modelling", "animal", "in_vitro", "protocol", "registration", "guideline"],
    "drug": ["ketamine", "esketamine", "arketamine", "hnk"],
    "route": ["iv", "intranasal", "oral", "sublingual", "intramuscular", "subcutaneous"],
}


def tag(title: str = "", abstract: str = "", **extra) -> dict:
    from ingest.sources.files import split_inline_sections

    record = {"title": title, "abstract": abstract, "abstract_sections": split_inline_sections(abstract), **extra}
    return tag_record(record).as_dict()


def test_vocabulary_covers_the_issue_and_is_well_formed():
    vocab = load_vocabulary()
    for kind, ids in ISSUE_TAGS.items():
        assert set(ids) <= {t.id for t in vocab.of_kind(kind)}, kind
    rule_based = {"registration"}  # recognised from a record's registry field labels (design_cues)
    for t in vocab.tags.values():
        assert t.label and t.definition and (t.patterns or t.mesh or t.pubtypes or t.id in rule_based), t.id
    for t in vocab.of_kind("design"):
        assert t.evidence_level in vocab.evidence_levels or t.id in ("protocol", "registration"), t.id
    assert "D061218" in {m["ui"] for m in vocab.tags["trd"].mesh}


def test_bad_vocabulary_is_refused(tmp_path):
    bad = tmp_path / "v.yaml"
    bad.write_text("kinds: {drug: {label: Drug}}\ntags:\n  - {id: a, kind: drug, label: A, patterns: ['(']}\n")
    with pytest.raises(VocabularyError, match="bad pattern"):
        load_vocabulary(bad)
    bad.write_text("kinds: {drug: {label: Drug}}\ntags:\n  - {id: a, kind: dose, label: A}\n")
    with pytest.raises(VocabularyError, match="unknown kind"):
        load_vocabulary(bad)


def test_rct_of_intranasal_esketamine_with_evidence():
    result = tag(
        "Intranasal esketamine for suicidal ideation: a randomized, double-blind, placebo-controlled trial",
        "BACKGROUND: Ketamine is an NMDA receptor antagonist. METHODS: We randomized 226 adults with major "
        "depressive disorder and active suicidal ideation to esketamine nasal spray 84 mg or placebo. RESULTS: "
        "Dissociation and dizziness were the most common adverse events. No serious adverse events and no "
        "cases of hepatotoxicity were observed. CONCLUSIONS: Esketamine reduced depressive symptoms within 24 hours.")
    assert result["design"] == ["rct"]
    assert result["drug"] == ["esketamine"]
    assert result["route"] == ["intranasal"]
    assert {"suicidal_ideation", "mdd"} <= set(result["indication"])
    assert set(result["side_effect"]) == {"dissociation", "dizziness"}
    assert result["side_effect_absent"] == ["hepatotoxicity"]
    assert result["mechanism"] == []  # "Ketamine is an NMDA receptor antagonist" in background: named, not studied
    assert result["sample_size"] == 226
    assert result["evidence_level"] == 2
    evidence = {(e["tag_id"], e["negated"]): e for e in result["evidence"]}
    assert evidence[("dissociation", False)]["evidence"] == (
        "Dissociation and dizziness were the most common adverse events.")
    assert evidence[("dissociation", False)]["section"] == "RESULTS"
    assert evidence[("hepatotoxicity", True)]["evidence"].startswith("No serious adverse events")
    assert any(e["tag_id"] == "suicidal_ideation" and e["source"] == "title" for e in result["evidence"])


@pytest.mark.parametrize("sentence", [
    "Dissociation did not differ between groups.",
    "There was no evidence of dissociation at any dose.",
    "Patients did not experience dissociation.",
    "Dissociative symptoms were not observed.",
])
def test_negated_side_effects_are_absent_not_present(sentence):
    result = tag("Oral ketamine in depression", f"RESULTS: {sentence}")
    assert "dissociation" not in result["side_effect"]
    assert result["side_effect_absent"] == ["dissociation"]


def test_negation_scope_stops_at_but():
    sentence = "No hallucinations occurred, but dissociation was frequent."
    assert is_negated(sentence, sentence.index("hallucinations"), sentence.index("hallucinations") + 14)
    start = sentence.index("dissociation")
    assert not is_negated(sentence, start, start + 12)
    result = tag("Ketamine", f"RESULTS: {sentence}")
    assert result["side_effect"] == ["dissociation"] and result["side_effect_absent"] == ["hallucinations"]


def test_prevented_effect_and_background_mentions_are_not_side_effects():
    result = tag(
        "Esketamine during caesarean section",
        "BACKGROUND: Ketamine misuse and cystitis are known risks. RESULTS: Esketamine reduced the incidence "
        "of postoperative nausea and vomiting.")
    assert result["side_effect"] == [] and result["side_effect_absent"] == []


def test_designs_are_resolved_to_the_study_itself():
    assert set(tag("Ketamine for depression: a systematic review and meta-analysis of randomized trials",
                   "We searched PubMed and Embase. Twelve RCTs were pooled.")["design"]) == {
        "meta_analysis", "systematic_review"}
    assert tag("Ketamine and the glutamate hypothesis: a review",
               "Randomized trials have shown rapid effects.")["design"] == ["narrative_review"]
    assert tag("Esketamine versus ECT: study protocol for a randomised controlled trial",
               "Patients will be randomized to esketamine or ECT.")["design"] == ["protocol"]
    assert tag("Arketamine in a chronic social defeat model",
               "RESULTS: Arketamine reversed depression-like behaviour in mice. Mice received 10 mg/kg.")[
        "design"] == ["animal"]
    assert tag("Ketamine-associated cystitis: a case report",
               "We describe a 24-year-old man with ketamine-associated cystitis.")["design"] == ["case_report"]
    result = tag("Ketamine trial", "", publication_types=[{"name": "Randomized Controlled Trial"}])
    assert result["design"] == ["rct"]
    assert result["evidence"][0]["source"] == "publication_type"


def test_mesh_headings_give_tags_with_their_qualifiers_as_evidence():
    result = tag("A study", "", mesh=[{"descriptor": "Depressive Disorder, Treatment-Resistant",
                                       "descriptor_ui": "D061218", "qualifiers": [{"name": "drug therapy"}]}])
    assert result["indication"] == ["trd"]
    assert result["evidence"][0] == {
        "tag_id": "trd", "kind": "indication", "source": "mesh",
        "evidence": "Depressive Disorder, Treatment-Resistant/drug therapy",
        "section": None, "negated": False, "sentence_index": None}


def test_enantiomers_are_told_apart():
    assert tag("(R)-ketamine and (S)-ketamine in rats", "")["drug"] == ["arketamine", "esketamine"]
    result = tag("Esketamine nasal spray in TRD", "METHODS: Esketamine, the S-enantiomer of ketamine, was given.")
    assert result["drug"] == ["esketamine"]
    assert tag("Racemic ketamine versus esketamine", "")["drug"] == ["esketamine", "ketamine"]


@pytest.mark.parametrize("text,expected", [
    ("METHODS: A total of 1,208 patients were included.", 1208),
    ("METHODS: Forty children received intramuscular ketamine.", 40),
    ("RESULTS: Of the 64 participants enrolled, most responded (n = 64).", 64),
    ("METHODS: We enrolled 30 adults with PTSD.", 30),
])
def test_sample_size(text, expected):
    result = tag("Ketamine trial", text)
    assert result["sample_size"] == expected
    assert result["sample_size_evidence"] == text.split(": ", 1)[1]


def test_sample_size_not_taken_from_years_or_doses():
    assert tag("Ketamine", "METHODS: In 2019 we gave 0.5 mg/kg ketamine.")["sample_size"] is None


def test_word_boundaries():
    # "ampa" must not match inside "rampant", nor "rat" inside "rate".
    result = tag("Rampant response rate", "RESULTS: The response rate was high.")
    assert "ampa" not in result["mechanism"] and "animal" not in result["design"]


def test_tag_text_cli_round_trip():
    lines = [
        json.dumps({"id": "x1", "title": "Oral ketamine for chronic neuropathic pain: a retrospective cohort",
                    "abstract": "Nausea was common. No hallucinations were reported."}),
        "{not json",
        json.dumps({"title": 5}),
    ]
    result = CliRunner().invoke(cli, ["tag-text"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 1 and out[0]["id"] == "x1"
    tags = out[0]["tags"]
    assert tags["route"] == ["oral"] and tags["indication"] == ["chronic_pain"] and tags["design"] == ["cohort"]
    assert tags["side_effect"] == ["nausea_vomiting"] and tags["side_effect_absent"] == ["hallucinations"]
    assert "Error: line 2:" in result.stderr and "Error: line 3: title and abstract must be strings" in result.stderr


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_keyed_text_marks_exactly_the_word_breaks(text):
    # The fast translation must agree with the plain definition: every character that is not
    # a letter, digit, "-" or "_" becomes NUL, one NUL in front, offsets unchanged.
    assert keyed(text) == "\0" + re.sub(r"[^\w-]", "\0", text)
