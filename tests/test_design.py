"""The study's own design, evidence level, sample size and topic (issue: tags that describe the study itself)."""

from __future__ import annotations

import pytest

from ingest.sources.files import split_inline_sections
from ingest.tagging import load_vocabulary, tag_record
from ingest.tagging.sample_size import to_int


def tag(title: str = "", abstract: str = "", **extra) -> dict:
    record = {"title": title, "abstract": abstract, "abstract_sections": split_inline_sections(abstract), **extra}
    return tag_record(record).as_dict()


# --------------------------------------------------------------------------- RCT only when this study randomised


@pytest.mark.parametrize("title, abstract", [
    ("Ketamine for depression in older adults", "CONCLUSIONS: Further randomised controlled trials are needed."),
    ("Open-label ketamine in TRD", "METHODS: This open-label, non-randomized, uncontrolled, retrospective chart "
     "review included 52 patients who received ketamine infusions."),
    ("Esketamine and suicide risk", "METHODS: We emulated a target randomised trial using registry data from 4,210 "
     "patients treated with esketamine or ECT."),
    ("Cost-effectiveness of esketamine", "METHODS: A Markov model was built with parameters from a randomized "
     "controlled trial. RESULTS: Esketamine cost 56,000 USD per QALY."),
    ("Ketamine for depression: a systematic review and meta-analysis", "METHODS: We searched PubMed and included "
     "twelve randomized controlled trials. RESULTS: Ketamine reduced depression scores."),
    ("Ketamine in TRD", "METHODS: In this quasi-randomised study, 40 patients received ketamine or ECT."),
    ("Ketamine in TRD", "METHODS: Patients were not randomised; 30 chose ketamine and 30 chose ECT."),
    ("Ketamine for pain", "METHODS: In this double-blind, placebo-controlled study, 24 patients received ketamine "
     "or saline."),
])
def test_mentions_emulations_models_and_hedges_are_not_rcts(title, abstract):
    assert "rct" not in tag(title, abstract)["design"]


def test_placebo_controlled_without_randomisation_is_a_controlled_trial():
    result = tag("Ketamine for pain", "METHODS: In this double-blind, placebo-controlled study, 24 patients "
                 "received ketamine or saline. RESULTS: Pain fell.")
    assert result["design"] == ["nonrandomised_trial"] and result["evidence_level"] == 3


def test_single_arm_open_label_trial_is_kept_apart():
    result = tag("Oral ketamine for suicidal ideation: a single-arm, open-label phase II trial",
                 "METHODS: Thirty-two adults received six doses of oral ketamine. RESULTS: Ideation fell.")
    assert result["design"] == ["single_arm_trial"]
    assert result["evidence_level"] == 4 and result["sample_size"] == 32


def test_own_randomisation_is_an_rct():
    result = tag("Ketamine versus midazolam in depression",
                 "METHODS: A total of 94 elderly patients were divided into two groups by the random number table "
                 "method. RESULTS: Scores fell in both groups.")
    assert result["design"] == ["rct"] and result["sample_size"] == 94


def test_secondary_analysis_keeps_the_parent_design():
    result = tag("Sleep and ketamine response: a post hoc analysis",
                 "METHODS: This is a post hoc analysis of a randomized, placebo-controlled trial in which 120 "
                 "patients were randomized to ketamine or midazolam. RESULTS: Sleep improved.")
    assert result["design"] == ["secondary_analysis"]
    assert result["parent_design"] == "rct" and result["evidence_level"] == 3


def test_modelling_study_has_no_sample_size():
    result = tag("Cost-effectiveness of esketamine nasal spray: a Markov model",
                 "METHODS: A microsimulation of 350,000 patients was run. RESULTS: The ICER was high.")
    assert result["design"] == ["modelling"]
    assert result["sample_size"] is None and result["evidence_level"] == 5


def test_trial_registry_record_is_a_registration():
    abstract = ("INTERVENTION: Drug: esketamine nasal spray. PRIMARY OUTCOME: Change in MADRS at day 28. "
                "INCLUSION CRITERIA: Adults with TRD. EXCLUSION CRITERIA: Psychosis.")
    result = tag("A randomized trial of esketamine versus quetiapine", abstract)
    assert result["design"] == ["registration"]
    assert result["evidence_level"] is None and result["sample_size"] is None


# --------------------------------------------------------------------------- sample size


@pytest.mark.parametrize("words, value", [
    ("Seventy-six", 76), ("Fifty- six", 56), ("one hundred and twelve", 112), ("twenty one", 21),
    ("1,204", 1204), ("a hundred", 100), ("seventeen", 17), ("banana", None),
])
def test_number_words(words, value):
    assert to_int(words) == value


@pytest.mark.parametrize("abstract, n", [
    ("METHODS: Seventy-six patients with TRD were randomised to ketamine or placebo.", 76),
    ("METHODS: The study was carried out on 64 patients undergoing surgery.", 64),
    ("RESULTS: Fifty- six maintenance cycles from 38 patients were analysed.", 38),
    ("METHODS: Patients received ketamine (n = 20) or midazolam (n = 22).", 42),
    ("METHODS: Of the randomised participants (n = 60), ketamine (n = 30) and placebo (n = 30).", 60),
    ("METHODS: One hundred and twelve adults were enrolled.", 112),
])
def test_sample_size(abstract, n):
    assert tag("Ketamine in depression: a randomised trial", abstract)["sample_size"] == n


def test_syntheses_count_studies_and_pooled_participants_not_a_sample_size():
    result = tag("Ketamine for suicidal ideation: a systematic review and meta-analysis",
                 "METHODS: We searched MEDLINE and Embase. RESULTS: Fifteen RCTs involving 1,132 participants "
                 "were included. Ketamine reduced ideation.")
    assert result["sample_size"] is None
    assert result["studies_included"] == 15 and result["participants_pooled"] == 1132
    assert "Fifteen RCTs" in result["studies_included_evidence"]


# --------------------------------------------------------------------------- on topic, routes, mechanisms


def test_off_topic_records_are_flagged():
    lsd = tag("LSD microdosing and mood: a randomised trial",
              "BACKGROUND: Ketamine and psilocybin have rapid effects. METHODS: 80 adults received LSD or placebo.")
    assert lsd["on_topic"] is False
    on = tag("Esketamine nasal spray in TRD", "RESULTS: Response was rapid.")
    assert on["on_topic"] is True and on["on_topic_evidence"] == "Esketamine nasal spray in TRD"
    by_mesh = tag("Rapid antidepressants", "RESULTS: Response was rapid.",
                  mesh=[{"descriptor": "Ketamine", "qualifiers": []}])
    assert by_mesh["on_topic"] is True


def test_mesh_route_yields_to_the_route_the_text_gives():
    result = tag("Esketamine nasal spray plus an oral antidepressant in TRD",
                 "METHODS: Patients self-administered esketamine nasal spray with a new oral antidepressant.",
                 mesh=[{"descriptor": "Administration, Oral", "descriptor_ui": "D000284", "qualifiers": []},
                       {"descriptor": "Administration, Intranasal", "descriptor_ui": "D000281", "qualifiers": []}])
    assert result["route"] == ["intranasal"]


def test_mechanism_studied_not_named():
    named = tag("Ketamine in TRD", "BACKGROUND: Ketamine, an NMDA receptor antagonist, is rapid. "
                "RESULTS: MADRS fell.")
    assert named["mechanism"] == []
    measured = tag("Ketamine in TRD", "METHODS: Serum BDNF was measured before and after infusion. "
                   "RESULTS: BDNF levels rose after ketamine.")
    assert measured["mechanism"] == ["bdnf_trkb"]


def test_every_design_maps_to_a_level_in_the_vocabulary():
    vocab = load_vocabulary()
    assert sorted(vocab.evidence_levels) == [1, 2, 3, 4, 5, 6]
    assert vocab.tags["secondary_analysis"].evidence_level_if_parent == {"rct": 3}


# --------------------------------------------------------------------------- what kind of article it is


@pytest.mark.parametrize("title, abstract", [
    ("Ketamine dosing after thoracic surgery: methodology matters",
     "The letter to the editor was written in response to a recent article on S-ketamine. In view of the "
     "retrospective nature of this study and a recent randomized controlled trial, its conclusions are uncertain."),
    ("Glutamatergic modulators for depression",
     "This narrative review provides an overview of glutamate signalling. Based on a proof-of-concept trial, "
     "NMDA-targeted therapies have been investigated."),
    ("What is needed for the roll-out of psychedelic treatments?",
     "PURPOSE OF REVIEW: Regulation has not been established. RECENT FINDINGS: Sponsors submitted applications "
     "after phase 3 trials. SUMMARY: Training is needed."),
    ("Sleep-administered ketamine: a strategy for two challenges",
     "Patients in clinical trials may guess their treatment. In this viewpoint, we propose giving ketamine "
     "during sleep."),
])
def test_letters_viewpoints_and_review_formats_are_narrative_reviews(title, abstract):
    assert tag(title, abstract)["design"] == ["narrative_review"]


def test_a_review_voice_does_not_override_the_study_s_own_methods():
    result = tag("Ketamine for TRD", "In this study we review outcomes of our clinic. METHODS: Patients were "
                 "randomly assigned to ketamine or midazolam. RESULTS: 40 patients improved.")
    assert result["design"] == ["rct"]


def test_a_meta_analysis_of_a_stated_search_is_also_a_systematic_review():
    result = tag("Esketamine nasal spray in depression: a meta-analysis",
                 "Embase, PubMed and Web of Science were searched for randomized controlled trials. Seven trials "
                 "were pooled.")
    assert result["design"] == ["meta_analysis", "systematic_review"]
    assert tag("Esketamine nasal spray in depression: a meta-analysis",
               "Seven trials were pooled; esketamine reduced MADRS scores.")["design"] == ["meta_analysis"]


@pytest.mark.parametrize("abstract, parent", [
    ("Patients with TRD were randomised 1:1 to esketamine or quetiapine. In this secondary publication, safety "
     "analyses are reported for 670 patients.", "rct"),
    ("METHODS: This retrospective analysis of an open-label study evaluates dose calculation in 28 inpatients.",
     "single_arm_trial"),
    ("METHODS: Data from 188 participants were pooled from four placebo-controlled, crossover ketamine trials.",
     None),
])
def test_secondary_publications_and_pooled_data_are_secondary_analyses(abstract, parent):
    result = tag("Side effects of ketamine", abstract)
    assert result["design"] == ["secondary_analysis"]
    if parent:
        assert result["parent_design"] == parent


@pytest.mark.parametrize("abstract, design", [
    ("This prospective observational clinical study followed 230 children given esketamine.", "cohort"),
    ("METHODS: A cross- sectional study was conducted with chronic ketamine users.", "cross_sectional"),
    ("Across 15 seasons we surveyed 3,935 adults about ketamine use.", "cross_sectional"),
])
def test_observational_wordings(abstract, design):
    assert tag("Ketamine", abstract)["design"] == [design]


# --------------------------------------------------------------------------- the study's own indication


def test_surgery_is_the_setting_when_the_title_names_another_condition():
    abstract = ("METHODS: Patients undergoing elective surgery under general anesthesia were randomly assigned to "
                "esketamine or saline before anesthesia induction. RESULTS: Delirium occurred in 13 of 56 patients.")
    assert tag("Effect of esketamine on postoperative delirium after cardiac surgery", abstract)["indication"] \
        == ["delirium"]
    assert "anaesthesia" in tag("Esketamine and emergence delirium after anesthesia induction in children",
                                abstract)["indication"]


def test_postoperative_pain_as_a_secondary_outcome_is_not_the_indication():
    abstract = ("METHODS: Elderly patients were randomly assigned to esketamine or placebo. The secondary outcomes "
                "included postoperative pain intensity. RESULTS: Delirium was less frequent, and postoperative pain "
                "scores were lower with esketamine (P < 0.05).")
    assert tag("Low-dose esketamine and postoperative delirium in elderly patients", abstract)["indication"] \
        == ["delirium"]
    # With no other condition named in the title, the pain finding is the study's indication.
    assert "acute_pain" in tag("Low-dose esketamine in elderly patients", abstract)["indication"]


def test_major_depression_defined_by_failed_treatments_is_trd_only():
    result = tag("Esketamine monotherapy in adults with treatment-resistant depression",
                 "METHODS: Adults with major depressive disorder who had an inadequate response to 2 or more "
                 "antidepressants were randomly assigned. RESULTS: Esketamine improved MADRS scores in TRD.")
    assert result["indication"] == ["trd"]


# --------------------------------------------------------------------------- more ways to state n


@pytest.mark.parametrize("abstract, n", [
    ("METHODS: In a randomised, double-blind, placebo-controlled trial, 41 participants received oral ketamine or "
     "placebo thrice weekly.", 41),
    ("OBJECTIVE: This study evaluated ketamine for suicidal ideation. In a double-blind randomized trial, 36 "
     "inpatients with acute suicidal ideation were enrolled. RESULTS: Scores fell in both groups.", 36),
    ("METHODS: Ten in-patients with neuropathic pain participated in this single-blind study.", 10),
    ("METHODS: Our randomized, double-blind study involved 120 patients undergoing bariatric surgery.", 120),
    ("RESULTS: The final cohort comprised 11 patients.", 11),
    ("METHODS: 336 patients were randomised to esketamine and 340 to quetiapine.", 676),
    ("METHODS: 110 TRD and 25 TRBD patients were included and received maintenance infusions.", 135),
    ("METHODS: Seventeen participants with TRD, 18 participants with PTSD and 8 participants with OCD commenced "
     "oral ketamine.", 43),
    ("METHODS: The ketamine group (n = 8) received ketamine before ECT, while the control group (n = 8) received "
     "thiopental.", 16),
])
def test_sample_size_statements(abstract, n):
    assert tag("Ketamine trial", abstract)["sample_size"] == n


@pytest.mark.parametrize("abstract, routes", [
    ("METHODS: Children received esketamine by nasal administration before bronchoscopy. The secondary outcomes "
     "included the ease of intravenous cannulation.", ["intranasal"]),
    ("METHODS: Elderly patients received adjunctive esketamine in PCIA after hip surgery.", ["iv"]),
])
def test_route_wordings(abstract, routes):
    assert tag("Esketamine after surgery", abstract)["route"] == routes


def test_antidepressant_classes_and_the_drug_s_mesh_class_are_not_studied_mechanisms():
    abstract = ("METHODS: Patients were randomised to esketamine or quetiapine, alongside an ongoing selective "
                "serotonin reuptake inhibitor/serotonin norepinephrine reuptake inhibitor. RESULTS: Remission was "
                "more frequent with esketamine.")
    heading = {"descriptor": "Excitatory Amino Acid Antagonists", "qualifiers": [{"name": "therapeutic use"}]}
    record = {"mesh": [heading]}
    assert tag("Esketamine versus quetiapine in TRD", abstract, **record)["mechanism"] == []
    measured = abstract.replace("Remission was more frequent with esketamine.",
                                "Plasma serotonin levels rose after esketamine.")
    assert tag("Esketamine versus quetiapine in TRD", measured)["mechanism"] == ["monoamine"]
