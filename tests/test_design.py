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


# --------------------------------------------------------------------------- generalisation (dev set and old gold)


def test_a_publication_type_alone_does_not_show_randomisation():
    abstract = ("METHODS: Twelve healthy subjects took part in this double-blind, placebo-controlled crossover "
                "study. RESULTS: Ketamine induced negative symptoms.")
    rct_type = [{"name": "Randomized Controlled Trial"}]
    assert tag("Ketamine in healthy subjects", abstract, publication_types=rct_type)["design"] == [
        "nonrandomised_trial"]
    stated = abstract.replace("double-blind", "randomised, double-blind")
    assert tag("Ketamine in healthy subjects", stated, publication_types=rct_type)["design"] == ["rct"]
    assert tag("Ketamine trial", "", publication_types=rct_type)["design"] == ["rct"]  # no abstract to read


@pytest.mark.parametrize("title, abstract, design", [
    ("Single arketamine in TRD: presentation of 3 cases", "RESULTS: Sick leave was shorter. CONCLUSIONS: The study "
     "faces limitations due to its small sample size and lack of randomization.", ["case_series"]),
    ("The top 50 articles in psychiatry: a bibliometric analysis", "RESULTS: The top articles spanned cross-sectional "
     "studies and randomized controlled trials being the most prevalent.", ["cross_sectional"]),
    ("Repeated ketamine infusions in TRD", "METHODS: 30 patients received six ketamine infusions. RESULTS: Scores "
     "fell. CLINICAL TRIAL REGISTRATION: jRCTs031210648 (Japan Registry of Clinical Trials).", ["single_arm_trial"]),
    ("Intramuscular ketamine vs. midazolam in the emergency department: clinical trial design and rationale",
     "The study we describe here is a randomized midazolam-controlled clinical trial.", ["protocol"]),
    ("A preclinical multi-center randomized controlled trial of R-ketamine on alcohol relapse",
     "METHODS: Rats were trained to self-administer alcohol. RESULTS: Relapse was reduced in rats.", ["animal"]),
])
def test_study_s_own_design_in_harder_wordings(title, abstract, design):
    assert tag(title, abstract)["design"] == design


def test_a_protocol_publication_type_on_a_results_paper_is_the_trial():
    result = tag("Repeated oral ketamine for resistant depression: randomised, placebo-controlled study",
                 "METHOD: In a randomised trial, 41 participants received oral ketamine or placebo. RESULTS: "
                 "Twenty-two participants were randomised to ketamine, and 19 to placebo.",
                 publication_types=[{"name": "Clinical Trial Protocol"}])
    assert result["design"] == ["rct"] and result["sample_size"] == 41


def test_an_abstract_without_design_methods_or_participants_is_a_narrative_review():
    abstract = ("Ketamine is an anaesthetic with antidepressant properties. Its glutamatergic action differs from "
                "monoaminergic drugs. Newer compounds target the same pathway. Their place in psychiatry is debated.")
    assert tag("Drugs with glutamate-based mechanisms of action in psychiatry", abstract)["design"] == [
        "narrative_review"]
    counted = abstract.replace("Newer compounds", "Sixty patients received ketamine and newer compounds")
    assert tag("Drugs with glutamate-based mechanisms of action in psychiatry", counted)["design"] != [
        "narrative_review"]
    assert tag("Ketamine research 2000-2023: a bibliometric analysis", abstract)["design"] == []


def test_models_outcomes_and_searches_stated_once():
    trial = tag("Serial ketamine infusions for depression: the KARMA-Dep 2 randomized clinical trial",
                "OBJECTIVE: To assess efficacy and cost-effectiveness. RESULTS: There were no differences in "
                "cost-effectiveness.")
    assert trial["design"] == ["rct"]
    model = tag("Impact analysis of expanded access to ketamine",
                "Materials & methods: A population-level Markov simulation model with parameters from a "
                "randomized trial was used to simulate outcomes.")
    assert model["design"] == ["modelling"] and model["sample_size"] is None
    review = tag("Ketamine in Alzheimer's disease: preclinical and clinical evidence",
                 "Following PRISMA guidelines, we conducted a systematic search of PubMed and Web of Science. "
                 "Nineteen clinical studies met the inclusion criteria.")
    assert review["design"] == ["systematic_review"] and review["studies_included"] == 19


def test_a_trial_reported_with_its_meta_analysis_is_both():
    result = tag("Oral ketamine for depression, a randomized controlled trial and meta-analysis",
                 "Forty-five patients received oral ketamine or midazolam in a double-blind trial. In a total of "
                 "592 patients, meta-analysis of randomized controlled trials demonstrated efficacy.")
    assert set(result["design"]) == {"rct", "meta_analysis"}
    assert result["sample_size"] == 45 and result["evidence_level"] == 1


@pytest.mark.parametrize("abstract", [
    "METHODS: Data were drawn from a previous double-blind, placebo-controlled crossover trial of 26 patients.",
    "METHODS: Data from TRANSFORM-1 and TRANSFORM-2 (two randomized, active-controlled studies) and SUSTAIN-1 "
    "were analyzed.",
])
def test_data_re_used_from_earlier_trials_is_a_secondary_analysis(abstract):
    assert tag("Esketamine and depressive symptom severity", abstract)["design"] == ["secondary_analysis"]


@pytest.mark.parametrize("abstract, n", [
    ("METHODS: In this two-center observational study, 261 adults with TRD at Sainte-Anne Hospital, Paris, France, "
     "received eight esketamine sessions.", 261),
    ("METHODS: In a post hoc analysis, 35 TRBD patients received ketamine. RESULTS: Fourteen patients (40%) were "
     "nonresponders.", 35),
    ("RESULTS: Forty-four of 82 patients (54%) were randomized to ketamine.", 82),
    ("METHODS: In this randomized crossover study, thirty-five healthy male participants (mean age (SD) = 25.1 "
     "years) were scanned.", 35),
    ("METHODS: In this study, 112 children aged between 3 and 12 years who underwent adenoidectomy and "
     "tonsillectomy were recruited. RESULTS: Eighteen children experienced emergence delirium.", 112),
    ("METHODS: We compared arousal between 36 individuals with TRD and 25 healthy volunteers.", 61),
    ("METHODS: 169 participants with MDD received TMS only, while 66 received TMS and ketamine.", 235),
    ("METHODS: Characteristics were compared in those qualified (N = 493) versus not qualified (N = 228).", 721),
])
def test_sample_size_from_groups_shares_and_long_descriptions(abstract, n):
    assert tag("Ketamine trial", abstract)["sample_size"] == n


@pytest.mark.parametrize("abstract, studies, pooled", [
    ("METHODS: We searched PubMed. Of the 2275 articles identified, 93 met inclusion criteria. RESULTS: Of the 3756 "
     "participants who received ketamine, four had serious events.", 93, 3756),
    ("RESULTS: Seven studies (731 participants) out of 1220 identified articles were eligible for analysis.", 7, 731),
    ("RESULTS: From all included studies (n = 29), 15 found a relation while 13 studies showed none.", 29, None),
    ("RESULTS: A total of 238 studies (380,505 participants) met inclusion criteria.", 238, 380505),
])
def test_synthesis_counts(abstract, studies, pooled):
    result = tag("Ketamine: a systematic review and meta-analysis", abstract)
    assert (result["studies_included"], result["participants_pooled"]) == (studies, pooled)


@pytest.mark.parametrize("title, abstract, expected", [
    ("Rapid antisuicidal effects of ketamine infusion in TRD", "RESULTS: Scores fell.", {"trd", "suicidal_ideation"}),
    ("Esketamine for perioperative neurocognitive disorders in older adults", "RESULTS: Fewer disorders.",
     {"cognitive_disorder"}),
    ("Esketamine for postpartum depression and pain control following cesarean section", "RESULTS: Scores fell.",
     {"postpartum_depression", "acute_pain"}),
    ("Esketamine for postpartum depression", "METHODS: Women with perinatal depressive symptoms were included.",
     {"postpartum_depression"}),
    ("Ketamine on functional outcomes in major depressive disorder and treatment-resistant depression",
     "RESULTS: Function improved.", {"mdd", "trd"}),
])
def test_indication_wordings(title, abstract, expected):
    assert set(tag(title, abstract)["indication"]) == expected


def test_drugs_reviewed_together_and_compared_in_passing():
    review = tag("Psychoplastogens and BDNF in humans", "RESULTS: We analysed ketamine, esketamine, LSD and "
                 "psilocybin. Ketamine raised BDNF.")
    assert review["drug"] == ["esketamine", "ketamine"]
    assert "esketamine" in tag("Serotonergic psychedelics and (es)ketamine", "")["drug"]
    arketamine = tag("Arketamine: a scoping review", "RESULTS: Arketamine caused fewer dissociative effects "
                     "compared to esketamine.")
    assert arketamine["drug"] == ["arketamine"]


@pytest.mark.parametrize("abstract, routes", [
    ("METHODS: Children received intranasal ketamine. RESULTS: Emergence delirium was higher in Group IV.",
     ["intranasal"]),
    ("METHODS: Patients received intravenous ketamine. Pre-dosing with 4 mg oral ondansetron prevented nausea.",
     ["iv"]),
    ("METHODS: Patients received intravenous (IV) ketamine plus intramuscular (IM) naltrexone or IM saline.", ["iv"]),
])
def test_another_drug_s_route_and_roman_numerals(abstract, routes):
    assert tag("Ketamine trial", abstract)["route"] == routes


def test_author_keywords_alone_do_not_make_a_study_about_ketamine():
    result = tag("Expert recommendations for psychedelic-assisted therapy",
                 "This paper evaluates frameworks for MDMA and psilocybin therapy.", keywords=["Ketamine", "MDMA"])
    assert result["on_topic"] is False
