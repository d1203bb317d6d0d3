"""Stance and verdict (ingest/claims/stance.py): claims read for their qualifiers, studies judged on
their own findings, the verdict weighed by evidence, and the output contract of kb check and the page."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_corpus
from datasette.app import Datasette
from test_claims import make_kb, study

from ingest.claims import check_claim
from ingest.claims.results import CSV_COLUMNS
from ingest.claims.stance import (
    STANCES,
    VERDICTS,
    Stance,
    StudyContext,
    read_claim,
    study_stance,
    verdict,
)
from ingest.claims.understand import claim_tags
from ingest.cli import cli
from ingest.db import build as builder
from ingest.tagging.findings import extract_findings
from ingest.tagging.sentences import Sentence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from findings_eval import load_findings_gold, predict_sentences, score_findings  # noqa: E402
from stance_eval import load_stance_gold, score_stances, score_verdicts  # noqa: E402


def assertion(claim: str):
    return read_claim(claim, claim_tags(claim))


def judged(claim: str, results: list[str], **context) -> Stance:
    sentences = [Sentence(text, "RESULTS", "results", i) for i, text in enumerate(results, 1)]
    findings, quantities = extract_findings(sentences)
    context = {"drugs": ["ketamine"], "indications": ["mdd"], "reported": results, **context}
    return study_stance(assertion(claim), findings, quantities, StudyContext(**context))


# --------------------------------------------------------------------------- reading the claim


def test_qualifiers_are_read_from_the_claim():
    assert assertion("Ketamine's antidepressant effect lasts up to four hours.").duration_max_h == 4
    assert assertion("Ketamine relief can be permanent.").permanent
    assert assertion("Ketamine must be given intravenously to work.").required_routes == ["iv"]
    kind, low, high = assertion("About half of patients respond to ketamine.").rate
    assert kind == "response_rate" and low < 50 < high
    assert assertion("Ketamine causes bladder damage.").effect == "harm"
    assert assertion("Ketamine causes bladder damage.").outcomes == {"urinary"}
    assert assertion("Ketamine has no side effects.").effect == "absence"


# --------------------------------------------------------------------------- one study


def test_a_null_result_on_the_claimed_effect_contradicts_it():
    stance = judged("Ketamine reduces depression.",
                    ["Ketamine did not significantly reduce depressive symptoms compared with placebo."])
    assert stance.label == "contradicts" and "did not significantly" in stance.sentence


def test_an_improvement_supports_a_benefit_claim_with_its_sentence():
    stance = judged("Ketamine reduces depression.",
                    ["Depressive symptoms improved significantly more with ketamine than with placebo."])
    assert stance.label == "supports" and stance.sentence.startswith("Depressive symptoms improved")


def test_durations_of_days_contradict_up_to_four_hours():
    stance = judged("Ketamine's antidepressant effects last up to four hours.",
                    ["The antidepressant effect was sustained for up to 14 days."])
    assert stance.label == "contradicts" and stance.values and stance.values[0]["value"] == 14 * 24


def test_efficacy_by_another_route_contradicts_a_required_route():
    stance = judged("Ketamine must be given intravenously to work.",
                    ["Oral ketamine significantly improved depressive symptoms versus placebo."], routes=["oral"])
    assert stance.label == "contradicts" and "another route" in stance.reason


def test_a_harm_found_supports_and_its_absence_contradicts_a_harm_claim():
    claim = "Ketamine causes bladder damage."
    assert judged(claim, ["Ketamine users had increased urinary symptoms and cystitis."]).label == "supports"
    assert judged(claim, ["No significant abnormalities were observed in bladder symptoms or laboratory results."]
                  ).label == "contradicts"


def test_a_study_of_another_drug_is_neutral():
    stance = judged("Ketamine reduces depression.", ["Depressive symptoms improved significantly."],
                    drugs=["esketamine"])
    assert stance.label == "neutral" and "not about" in stance.reason


def test_a_study_without_findings_on_the_outcome_is_neutral():
    assert judged("Ketamine reduces depression.", ["Blood pressure rose transiently."]).label == "neutral"


# --------------------------------------------------------------------------- the verdict


def test_one_small_study_is_insufficient():
    result = verdict([(Stance("supports", "It worked.", "x"), 6, "human", ["case_report"], "1")])
    assert result.label == "insufficient" and result.reasons[0].startswith("too little evidence")


def test_trials_against_a_case_series_contradict():
    stances = [(Stance("contradicts", "No effect.", "no difference"), 2, "human", ["rct"], str(i)) for i in range(3)]
    stances.append((Stance("supports", "It worked.", "improved"), 5, "human", ["case_series"], "9"))
    result = verdict(stances)
    assert result.label == "contradicted"
    assert any(r.startswith("3 RCTs contradict") for r in result.reasons)
    assert any(r.startswith("1 case series supports") for r in result.reasons)


def test_balanced_evidence_is_mixed_and_animal_studies_weigh_less():
    rcts = [(Stance("supports", "a", "x"), 2, "human", ["rct"], "1"),
            (Stance("contradicts", "b", "y"), 2, "human", ["rct"], "2"),
            (Stance("supports", "c", "x"), 2, "human", ["rct"], "3"),
            (Stance("contradicts", "d", "y"), 2, "human", ["rct"], "4")]
    assert verdict(rcts).label == "mixed"
    animals = [(Stance("supports", "a", "x"), 2, "animal", ["animal"], str(i)) for i in range(6)]
    assert verdict(animals).label == "insufficient"


def test_a_quantitative_verdict_reports_the_range_with_its_studies():
    stances = [(Stance("contradicts", "s", "duration", [{"type": "duration", "value": v, "unit": "h", "text": t}]),
                2, "human", ["rct"], pmid) for v, t, pmid in ((48, "for 2 days", "11"), (336, "14 days", "12"))]
    result = verdict(stances, quantitative=True)
    assert result.reasons[-1] == "reported durations from for 2 days (PMID 11) to 14 days (PMID 12)"


# --------------------------------------------------------------------------- the output contract

CONTRACT_STUDIES = [
    study("301", "Ketamine for depression trial A", ["rct"],
          [("results", "Ketamine did not significantly reduce depressive symptoms compared with placebo.")],
          indications=["mdd"]),
    study("302", "Ketamine for depression trial B", ["rct"],
          [("results", "Depressive symptoms improved significantly more with ketamine than with placebo.")],
          indications=["trd"]),
    study("303", "Bladder cohort", ["cohort"],
          [("results", "Ketamine users had increased urinary symptoms and cystitis.")]),
]


@pytest.fixture(scope="module")
def contract_kb(tmp_path_factory) -> Path:
    return make_kb(tmp_path_factory.mktemp("stance") / "kb.db", CONTRACT_STUDIES)


def test_check_gives_a_verdict_and_a_stance_per_study(contract_kb):
    conn = sqlite3.connect(f"file:{contract_kb}?mode=ro", uri=True)
    result = check_claim(conn, "Ketamine reduces depressive symptoms")
    assert result.verdict["label"] in VERDICTS and result.verdict["reasons"]
    stances = {s.pmid: (s.stance, s.stance_sentence) for s in result.results}
    assert stances["301"][0] == "contradicts" and "did not significantly" in stances["301"][1]
    assert stances["302"][0] == "supports"
    assert all(s.stance in STANCES for s in result.results)


def test_kb_check_json_csv_and_text_carry_the_verdict_and_stances(contract_kb):
    args = ["check", "Ketamine reduces depressive symptoms", "--db", str(contract_kb), "--mode", "fts"]
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)
    assert data["verdict"]["label"] in VERDICTS and isinstance(data["verdict"]["reasons"], list)
    assert {"pmid", "stance", "stance_sentence"} <= set(data["results"][0])
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(cli, [*args, "--csv"]).stdout)))
    assert list(rows[0]) == CSV_COLUMNS
    assert {r["pmid"]: r["stance"] for r in rows}["301"] == "contradicts"
    assert rows[0]["verdict"] == data["verdict"]["label"]
    text = CliRunner().invoke(cli, args).stdout
    assert f"Verdict: {data['verdict']['label'].upper()}" in text
    assert "Stance: contradicts" in text and "> Ketamine did not significantly" in text
    assert "matched by words" in text and "Anon." not in text


def test_a_study_without_authors_is_cited_as_pubmed_does(contract_kb, tmp_path):
    path = make_kb(tmp_path / "kb.db", CONTRACT_STUDIES[:1])
    sqlite3.connect(path).execute("update studies set first_author = null").connection.commit()
    text = CliRunner().invoke(cli, ["check", "Ketamine reduces depressive symptoms", "--db", str(path)]).stdout
    assert "[No authors listed] (2020)" in text


@pytest.fixture(scope="module")
def page(contract_kb) -> Datasette:
    return Datasette(immutables=[str(contract_kb)], plugins_dir=str(ROOT / "ingest" / "site" / "plugins"),
                     template_dir=str(ROOT / "ingest" / "site" / "templates"))


def test_the_claim_check_page_shows_the_verdict_and_marks_each_stance(page):
    response = asyncio.run(page.client.get("/-/claim-check", params={"claim": "Ketamine reduces depressive symptoms"}))
    html = response.text
    assert response.status_code == 200
    assert 'class="cc-verdict cc-verdict-' in html and "Verdict:" in html
    assert 'class="cc-stance cc-stance-contradicts"' in html and 'class="cc-stance cc-stance-supports"' in html
    assert 'class="cc-decisive"' in html and "words only" in html and "_format=csv" in html


def test_the_claim_check_page_exports_csv(page):
    response = asyncio.run(page.client.get("/-/claim-check", params={
        "claim": "Ketamine reduces depressive symptoms", "_format": "csv"}))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "claim-check.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == CSV_COLUMNS and {r["stance"] for r in rows} <= set(STANCES)
    empty = asyncio.run(page.client.get("/-/claim-check", params={"_format": "csv"}))
    assert empty.status_code == 400


# --------------------------------------------------------------------------- floors on the blind gold sets

# What scripts/eval_claims.py measured (see the issue-14 note) minus a margin: a change that makes
# stances, verdicts or findings worse fails here. The targets are far above these.
STANCE_FLOORS = {"dev": 0.52, "test": 0.46}
VERDICT_FLOORS = {"dev": 0.55, "test": 0.42}
FINDINGS_FLOORS = {"dev": (0.80, 0.57, 0.73), "test": (0.75, 0.56, 0.55)}  # direction acc., outcome F1, quantity F1


@pytest.fixture(scope="module")
def corpus_records():
    return builder.collect_dir(require_corpus() / "pubmed").records


@pytest.fixture(scope="module")
def corpus_conn(tmp_path_factory):
    target = tmp_path_factory.mktemp("stance_corpus") / "kb.db"
    builder.build(target, builder.collect_dir(require_corpus() / "pubmed"), "files", "from-dir")
    connection = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    yield connection
    connection.close()


@pytest.mark.parametrize("split", ["dev", "test"])
def test_stance_and_verdict_floors(corpus_conn, split):
    claims, pairs, verdicts = load_stance_gold(split)
    stances = score_stances(corpus_conn, claims, pairs)
    assert len(pairs) >= 150 and stances.macro_f1 >= STANCE_FLOORS[split], stances.macro_f1
    assert score_verdicts(corpus_conn, claims, verdicts).accuracy >= VERDICT_FLOORS[split]


@pytest.mark.parametrize("split", ["dev", "test"])
def test_findings_floors(corpus_records, split):
    gold = load_findings_gold(split)
    score = score_findings(gold, predict_sentences(corpus_records, gold))
    direction_floor, outcome_floor, quantity_floor = FINDINGS_FLOORS[split]
    assert score.direction_accuracy >= direction_floor and score.outcome_prf[2] >= outcome_floor
    assert score.quantity_prf[2] >= quantity_floor


def test_a_non_inferiority_claim_is_supported_by_equal_or_better_and_contradicted_by_not_non_inferior():
    claim = "Ketamine is non-inferior to electroconvulsive therapy for depression."
    assert assertion(claim).comparison == "noninferior"
    assert judged(claim, ["Ketamine was non-inferior to ECT for depressive symptoms."]).label == "supports"
    assert judged(claim, ["Ketamine produced a greater reduction in depressive symptoms compared to ECT."]
                  ).label == "supports"
    assert judged(claim, ["Ketamine was not non-inferior to ECT for depressive symptoms."]).label == "contradicts"


def test_kb_check_csv_cells_that_look_like_formulas_are_text(tmp_path):
    path = make_kb(tmp_path / "kb.db", [study("401", '=HYPERLINK("http://evil.example/","x") ketamine trial', ["rct"],
                                             [("results", "Ketamine reduced depressive symptoms versus placebo.")],
                                             indications=["mdd"])])
    out = CliRunner().invoke(cli, ["check", "Ketamine reduces depressive symptoms", "--db", str(path), "--csv"]).stdout
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["title"].startswith("'=HYPERLINK(") and row["pmid"] == "401" and row["n"] == "40"


def test_a_claimed_time_point_needs_a_result_reported_near_it():
    claim = "Ketamine's antidepressant advantage over placebo remains significant at day 7."
    assert assertion(claim).timepoint_h == 7 * 24
    assert judged(claim, ["Depressive symptoms improved significantly more with ketamine than placebo."]
                  ).label == "neutral"
    assert judged(claim, ["At day 7, depressive symptoms improved significantly more with ketamine than placebo."]
                  ).label == "supports"


def test_a_better_than_claim_needs_the_drug_favoured_over_the_comparator():
    claim = "Ketamine works better than electroconvulsive therapy for depression."
    assert judged(claim, ["Both ECT and ketamine significantly reduced depressive symptoms."]).label == "neutral"
    assert judged(claim, ["Ketamine produced a greater reduction in depressive symptoms than ECT."]).label == "supports"
    assert judged(claim, ["ECT showed greater improvement in depressive symptoms compared to ketamine."]
                  ).label == "contradicts"


def test_a_claim_that_something_blocks_the_effect_is_judged_on_the_sentences_naming_it():
    claim = "Naltrexone abolishes the antidepressant effect of ketamine."
    assert assertion(claim).modifier_terms == ["naltrexone"]
    abstract = ("Patients received ketamine after naltrexone or placebo. Depression improved in both groups. "
                "Naltrexone did not alter the antidepressant effect of ketamine.")
    context = StudyContext(drugs=["ketamine"], indications=["mdd"], text=abstract.lower(),
                           sentences=abstract.split(". "))
    stance = study_stance(assertion(claim), [], [], context)
    assert stance.label == "contradicts" and stance.sentence.startswith("Naltrexone did not alter")
    other = StudyContext(drugs=["ketamine"], indications=["mdd"], text="ketamine improved depression.",
                         sentences=["Ketamine improved depression."])
    assert study_stance(assertion(claim), [], [], other).label == "neutral"


def test_a_comparison_is_read_for_the_side_each_result_favours():
    claim = "The Spravato nasal spray works just as well as an IV ketamine drip."
    drug = {"drugs": ["esketamine", "ketamine"]}
    assert judged(claim, ["Response rates with esketamine were comparable to those with IV racemic ketamine."],
                  **drug).label == "supports"
    assert judged(claim, ["Response rates were higher with IV racemic ketamine than with esketamine nasal spray."],
                  **drug).label == "contradicts"
    # A result against a third party says nothing on this comparison.
    assert judged(claim, ["Esketamine nasal spray was superior to placebo in reducing depressive symptoms."],
                  **drug).label == "neutral"


def test_a_negated_superiority_or_a_failed_non_inferiority_goes_against_a_better_than_claim():
    claim = "Ketamine works better than electroconvulsive therapy (ECT) for severe depression."
    assert judged(claim, ["There was no evidence to support the superiority of ketamine over ECT for depressive "
                          "symptoms."]).label == "contradicts"
    assert judged(claim, ["ECT was superior to ketamine for improving depressive severity."]).label == "contradicts"
    assert judged(claim, ["Ketamine was not non-inferior to ECT in response rate."]).label == "contradicts"


def test_a_comparison_favouring_each_side_on_another_measure_is_mixed_and_side_effects_do_not_count():
    claim = "Ketamine works better than electroconvulsive therapy (ECT) for severe depression."
    assert judged(claim, ["Ketamine showed a faster onset of improvement, while ECT showed greater durability of "
                          "response."]).label == "mixed"
    assert judged(claim, ["Patients treated with ketamine showed superior cognitive functioning compared with ECT."]
                  ).label == "neutral"


def test_an_association_is_not_the_drugs_effect():
    claim = "Ketamine quickly reduces suicidal thoughts, often by the next day."
    suicidality = {"indications": ["suicidal_ideation"]}
    assert judged(claim, ["Higher plasma HNK levels correlated with less improvement in suicidal thoughts at 24 h."],
                  **suicidality).label == "neutral"
    assert judged(claim, ["Suicidal thoughts improved significantly at 24 h after ketamine."],
                  **suicidality).label == "supports"


def test_a_share_said_in_words_answers_a_rate_claim():
    claim = "Most people who respond to ketamine relapse within a month if they stop treatment."
    assert judged(claim, ["All but one ketamine responder relapsed within one month after the last infusion."]
                  ).label == "supports"
    assert judged(claim, ["Only a minority of responders relapsed during the follow-up."]).label == "contradicts"


def test_side_effects_reported_as_occurring_contradict_a_claim_of_none():
    claim = "Ketamine infusions have no side effects."
    assert judged(claim, ["The most common adverse events were nausea, dizziness and dissociation."]
                  ).label == "contradicts"
    assert judged(claim, ["No serious adverse events were reported."]).label == "supports"
    assert judged("Ketamine does not damage the bladder.",
                  ["Lower urinary tract symptoms were reported by 12 of 40 patients."]).label == "contradicts"


def test_two_routes_of_one_drug_are_the_sides_of_a_route_comparison():
    claim = "Ketamine tablets you take at home work just as well for depression as IV ketamine given in a clinic."
    read = assertion(claim)
    assert read.comparison == "equal" and read.comparator_text.lower().startswith("iv ketamine")
    context = {"routes": ["oral", "iv"]}
    assert judged(claim, ["Oral ketamine was less effective than intravenous ketamine for depressive symptoms."],
                  **context).label == "contradicts"
    assert judged(claim, ["Both oral and intravenous ketamine were given.",
                          "The 2 groups did not differ in depression ratings or response rates."],
                  **context).label == "supports"
    # Both improved is not a comparison.
    assert judged(claim, ["Depressive symptoms improved with oral ketamine."], **context).label == "neutral"


def test_a_claim_about_heavy_recreational_use_is_not_answered_by_clinical_trials():
    claim = "Using ketamine heavily over a long time can seriously damage your bladder."
    assert assertion(claim).recreational
    trial = "Urinary symptoms did not change from baseline in patients given ketamine for depression."
    assert judged(claim, [trial], text=trial.lower()).label == "neutral"
    users = "Among recreational ketamine users, bladder damage increased with the years of use."
    assert judged(claim, [users], text=users.lower()).label == "supports"


def test_a_result_stated_for_the_control_group_is_the_drugs_turned_round():
    sentence = ("At 6 weeks, the incidence of postpartum depression in the control group was 17.6%, significantly "
                "higher compared to the esketamine group (8.2%).")
    findings, _ = extract_findings([Sentence(sentence, "RESULTS", "results", 1)])
    assert [(f.outcome, f.direction) for f in findings] == [("depressive_symptoms", "improved")]


def test_a_study_saying_the_evidence_is_inconsistent_is_mixed():
    claim = "Arketamine relieves depression."
    assert judged(claim, ["Trials indicate potential antidepressant effects, but results are inconsistent."],
                  drugs=["arketamine"]).label == "mixed"


def test_time_points_listed_together_are_each_a_time_point():
    claim = "Esketamine reduced postpartum depression at around six weeks compared with saline."
    assert judged(claim, ["There were no differences between the groups in the incidence of PPD at postpartum "
                          "days 14, 28, and 42."], drugs=["esketamine"],
                   indications=["postpartum_depression"]).label == "contradicts"


def test_a_contrast_set_beside_the_claim_names_no_required_subject():
    claim = "Ketamine lifts depression within hours, while regular antidepressants like SSRIs take weeks."
    assert "ssris" not in assertion(claim).key_terms
    assert "ssris" in assertion("Ketamine works faster than SSRIs in adolescents taking ssris.").key_terms \
        or assertion("Ketamine works faster than SSRIs in adolescents taking ssris.").comparator_terms
