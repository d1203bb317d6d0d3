"""Findings: outcomes, directions and quantities from a study's own result sentences."""

from __future__ import annotations

import pytest

from ingest.tagging.findings import extract_findings, load_findings_vocabulary, sentence_findings, sentence_quantities
from ingest.tagging.sentences import Sentence, record_sentences


def result(text: str) -> Sentence:
    return Sentence(text, "RESULTS", "results", 3)


def directions(text: str) -> dict[str, str]:
    return {f.outcome: f.direction for f in sentence_findings(result(text), load_findings_vocabulary())}


def quantities(text: str) -> list[tuple[str, float, str]]:
    return [(q.type, q.value, q.unit) for q in sentence_quantities(result(text), load_findings_vocabulary())]


@pytest.mark.parametrize("text, expected", [
    ("Ketamine significantly reduced MADRS scores compared with midazolam.", {"depressive_symptoms": "improved"}),
    ("Esketamine did not significantly reduce the incidence of postoperative delirium.", {"delirium": "no_difference"}),
    ("Remission was more frequent with ketamine than with ECT.", {"remission": "improved"}),
    ("Response rates were lower in the ketamine group.", {"response": "worsened"}),
    ("Dissociative symptoms increased transiently.", {"dissociation": "increased"}),
    ("Pain scores were comparable between groups.", {"pain": "no_difference"}),
    ("The ketamine group failed to show superior remission.", {"remission": "no_difference"}),
    ("Blood pressure rose without serious adverse events.", {"blood_pressure": "increased",
                                                             "adverse_events": "no_difference"}),
    ("Ketamine reduced depression at 24 h, but there was no difference at day 7.", {"depressive_symptoms": "mixed"}),
    # Two arms' rates: the direction is the drug arm's against the control's, when significance is stated.
    ("PPD occurred in 18.8 % (n = 85) in the esketamine group and 39.3 % (n = 84) in the control group "
     "(odds ratio, 0.36 [95 % CI, 0.18-0.72]; P = 0.004).", {"depressive_symptoms": "improved"}),
    ("Delirium occurred in 10% of the ketamine group and 12% of the placebo group (P = 0.62).",
     {"delirium": "no_difference"}),
    ("Delirium occurred in 10% of the ketamine group and 12% of the placebo group.", {}),
])
def test_directions(text, expected):
    assert directions(text) == expected


def test_hedged_and_comparison_flags():
    vocab = load_findings_vocabulary()
    (finding,) = sentence_findings(result("Ketamine may reduce suicidal ideation versus placebo."), vocab)
    assert finding.hedged and finding.comparison
    (plain,) = sentence_findings(result("Suicidal ideation fell from baseline."), vocab)
    assert not plain.hedged and not plain.comparison


@pytest.mark.parametrize("text, expected", [
    ("Remission rates were 46% (44/96) with ketamine.", [("remission_rate", 46.0, "%")]),
    ("The antidepressant effect lasted up to 7 days.", [("duration", 168.0, "h")]),
    ("Improvement emerged within 40 minutes.", [("onset", pytest.approx(0.6667, abs=1e-3), "h")]),
    ("Median time to relapse was 18 days.", [("time_to_relapse", 432.0, "h")]),
    ("At 6-month follow-up, 52% of patients had relapsed.", [("relapse_rate", 52.0, "%"), ("follow_up", 4380.0, "h")]),
    ("Dissociation returned to baseline within 2 h.", [("duration", 2.0, "h")]),
    ("MADRS fell by 50% (95% CI 40-60%) at 24 hours in 60-year-old patients.", []),
    # Who the patients were is not a rate; the event they needed is.
    ("Of 90 patients (58 [64.4%] female), 41 (45.6%) remitted.", [("remission_rate", 45.6, "%")]),
    ("Six (10%) patients were intubated in the emergency department.", [("incidence", 10.0, "%")]),
    # How long patients were watched is the follow-up, not how long an effect lasted.
    ("Adverse events were monitored until 24 hours after childbirth.", [("follow_up", 24.0, "h")]),
    ("Opioid use fell over a 48-hour period after surgery.", [("follow_up", 48.0, "h")]),
    # Lists said "respectively", the verb after a rate, and the rate set against another.
    ("Response and remission rates were 67% and 58%, respectively.",
     [("response_rate", 67.0, "%"), ("remission_rate", 58.0, "%")]),
    ("46.4% (13/28) of patients achieved response and 32.1% achieved remission.",
     [("response_rate", 46.4, "%"), ("remission_rate", 32.1, "%")]),
    ("The incidence of delirium did not differ (18.3% vs. 10.6%, p = 0.262).",
     [("incidence", 18.3, "%"), ("incidence", 10.6, "%")]),
    ("Dissociation (38.8%, P = 0.014) and nausea (31.6%, P < 0.001) were common.",
     [("incidence", 38.8, "%"), ("incidence", 31.6, "%")]),
    # Not rates: non-responders, a response's definition, a confidence level.
    ("In this study, 30 patients (75%) were classified as non-responders.", []),
    ("In this study, 30 patients (75%) were classified as non- responders.", []),
    ("Response was defined as a reduction of 50% in MADRS; NNT = 4.9 (95 %-CI: 3.4, 8.7) for response.", []),
    ("The effect was sustained over 16 weeks of treatment.", [("duration", 2688.0, "h")]),
    ("Antidepressant effects peaked at 24 hours, declining over 2-3 days.", [("duration", 72.0, "h")]),
])
def test_quantities(text, expected):
    assert quantities(text) == expected


def test_only_the_study_s_own_results_are_read():
    record = {"title": "Ketamine for TRD", "abstract_sections": [
        {"label": "BACKGROUND", "text": "Ketamine has been shown to reduce depression within hours."},
        {"label": "METHODS", "text": "We aimed to evaluate whether ketamine improves remission."},
        {"label": "RESULTS", "text": "Remission was higher with ketamine (52% vs 20%)."},
    ]}
    findings, found = extract_findings(record_sentences(record))
    assert [(f.outcome, f.direction) for f in findings] == [("remission", "improved")]
    assert [q.value for q in found] == [52.0, 20.0]
    other_studies = {"title": "x", "abstract_sections": [
        {"label": "RESULTS", "text": "Previous studies reported that ketamine reduced pain by 40%."}]}
    assert extract_findings(record_sentences(other_studies)) == ([], [])
    protocol = {"title": "x", "abstract": "Ketamine for suicidality. Patients are randomised to ketamine or "
                "placebo. We hypothesize that the ketamine group will have fewer readmissions over 3-month "
                "follow-up."}
    assert extract_findings(record_sentences(protocol))[1] == []


@pytest.mark.parametrize("text, expected", [
    ("Of 297 adults, 176 achieved stable remission; 24 (26.7%) in the esketamine group and 39 (45.3%) in "
     "the placebo group experienced relapse.", [("relapse_rate", 26.7), ("relapse_rate", 45.3)]),
    ("After fentanyl, only 1/25 (HADS-depression) and 3/25 (HADS-anxiety) were responders.",
     [("response_rate", 4.0), ("response_rate", 12.0)]),
    ("Remission rates were 46% (44/96) with ketamine.", [("remission_rate", 46.0)]),
    ("Doses of 0.5 mg/kg were given to 3/4 of the sample.", []),
])
def test_rates_named_at_the_end_of_the_clause_and_rates_as_fractions(text, expected):
    _, quantities = extract_findings([Sentence(text, "RESULTS", "results", 1)])
    assert [(q.type, q.value) for q in quantities] == expected
