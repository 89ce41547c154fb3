"""The CLAIM 2024 and TRIPOD+AI checklists as tables: each published item (numbered as
published, topic in our own words), whether the card fills it from the run, partly, or the
author must supply it, and where in the card it is.

An item names the run facts it needs (keys of :data:`RUN_FACTS`, found by the card builder)
and the author's ``card:`` fields; ``manuscript`` stands for text only the paper can hold."""

from __future__ import annotations

from dataclasses import dataclass

# run facts a card can hold; the builder says which this run has
RUN_FACTS = ("model", "software", "init", "input", "training", "selection", "ensemble",
             "split", "disjoint", "counts", "flow", "characteristics", "metrics", "intervals",
             "heldout", "calibration", "subgroups", "worst", "limitations", "fitted",
             "robustness", "explain", "classes", "deid")
FILLED, PARTLY, AUTHOR = "filled", "partly", "author must supply"


@dataclass(frozen=True)
class Item:
    number: str
    topic: str
    where: str  # the card section (anchor) holding it
    run: tuple[str, ...] = ()
    author: tuple[str, ...] = ()


# CLAIM 2024 (Tejani et al., Radiology: Artificial Intelligence 2024), items 1-42 by number
CLAIM: tuple[Item, ...] = (
    Item("1", "Title says the study uses AI and which kind (e.g. deep learning)", "model",
         ("model",), ("manuscript",)),
    Item("2", "Structured abstract: design, methods, results, conclusions", "performance",
         ("metrics",), ("manuscript",)),
    Item("3", "Clinical background, intended use and role of the AI", "author",
         (), ("clinical_background", "intended_use")),
    Item("4", "Objectives and hypotheses", "author", (), ("objectives",)),
    Item("5", "Prospective or retrospective design", "author", (), ("study_design",)),
    Item("6", "Study goal (model creation, feasibility, non-inferiority, ...)", "author",
         (), ("study_design",)),
    Item("7", "Data sources", "data", ("counts",), ("data_sources",)),
    Item("8", "Inclusion and exclusion criteria", "flow", ("flow",), ("eligibility",)),
    Item("9", "Preprocessing of the data", "model", ("input",)),
    Item("10", "Selection of data subsets, if any", "flow", ("flow",)),
    Item("11", "Definitions of the data elements (imaging protocol, other inputs)", "model",
         ("input",), ("acquisition",)),
    Item("12", "De-identification", "data", ("deid",), ("deidentification",)),
    Item("13", "Handling of missing data", "characteristics", ("characteristics",),
         ("missing_data",)),
    Item("14", "Definition of the reference standard", "author", ("classes",),
         ("reference_standard",)),
    Item("15", "Why this reference standard", "author", (), ("reference_standard",)),
    Item("16", "Who annotated, their qualifications and preparation", "author", (),
         ("annotators",)),
    Item("17", "Annotation tools", "author", (), ("annotation_tools",)),
    Item("18", "Inter-/intra-rater variability and how disagreements were resolved",
         "author", (), ("rater_variability",)),
    Item("19", "Intended sample size and how it was chosen", "data", ("counts",),
         ("sample_size",)),
    Item("20", "How data were assigned to partitions, in what proportions", "split",
         ("split", "counts")),
    Item("21", "Level at which partitions are disjoint (image, patient, site)", "split",
         ("disjoint",)),
    Item("22", "Model description: inputs, outputs, layers", "model", ("model", "input")),
    Item("23", "Software libraries and versions", "model", ("software",)),
    Item("24", "Initialisation of parameters (random, transfer learning)", "model",
         ("init",)),
    Item("25", "Training details: augmentation, hyperparameters, models trained", "training",
         ("training",)),
    Item("26", "How the final model was selected", "training", ("selection", "fitted")),
    Item("27", "Ensembling, if any", "model", ("ensemble",)),
    Item("28", "Performance metrics used", "performance", ("metrics",)),
    Item("29", "Statistical measures of uncertainty and significance", "performance",
         ("intervals",)),
    Item("30", "Robustness or sensitivity analysis", "subgroups", ("robustness",)),
    Item("31", "Explainability methods and how they were checked", "author", ("explain",),
         ("explainability",)),
    Item("32", "Testing on external data", "limitations", ("heldout",),
         ("external_validation",)),
    Item("33", "Flow of participants or cases (diagram)", "flow", ("flow",)),
    Item("34", "Demographic and clinical characteristics per partition", "characteristics",
         ("characteristics",)),
    Item("35", "Performance of the final model on every partition", "performance",
         ("metrics",)),
    Item("36", "Accuracy estimates with their precision (intervals)", "performance",
         ("intervals", "heldout")),
    Item("37", "Failure analysis of misclassified cases", "worst", ("worst",)),
    Item("38", "Limitations: bias, uncertainty, generalisability", "limitations",
         ("limitations",), ("manuscript",)),
    Item("39", "Implications for practice, intended use, clinical role", "author", (),
         ("implications", "intended_use")),
    Item("40", "Registration number and registry", "author", (), ("registration",)),
    Item("41", "Where the full protocol can be read", "author", (), ("protocol",)),
    Item("42", "Funding and the funders' role", "author", (), ("funding",)),
)

# TRIPOD+AI (Collins et al., BMJ 2024), items 1-27 with their lettered parts
TRIPOD_AI: tuple[Item, ...] = (
    Item("1", "Title: develops or evaluates a prediction model; population and outcome",
         "model", ("model",), ("manuscript",)),
    Item("2", "Abstract (TRIPOD+AI for Abstracts)", "performance", ("metrics",),
         ("manuscript",)),
    Item("3a", "Health-care context and rationale, existing models", "author", (),
         ("clinical_background",)),
    Item("3b", "Target population, intended purpose and users in the care pathway", "author",
         (), ("intended_use",)),
    Item("3c", "Known health inequalities between groups", "author", (), ("fairness",)),
    Item("4", "Objectives: development, evaluation or both", "author", (), ("objectives",)),
    Item("5a", "Data sources per dataset, why, and how representative", "data", ("counts",),
         ("data_sources",)),
    Item("5b", "Dates of data collection", "author", (), ("data_sources",)),
    Item("6a", "Setting: care level, number and place of centres", "author", (),
         ("data_sources",)),
    Item("6b", "Eligibility criteria", "flow", ("flow",), ("eligibility",)),
    Item("6c", "Treatments received and how they were handled", "author", (),
         ("eligibility",)),
    Item("7", "Data preparation and quality checks, alike across groups", "model",
         ("input",), ("acquisition",)),
    Item("8a", "Outcome definition, time horizon, how assessed", "author", ("classes",),
         ("reference_standard",)),
    Item("8b", "Qualifications and demographics of outcome assessors", "author", (),
         ("annotators",)),
    Item("8c", "Blinding of outcome assessment", "author", (), ("annotators",)),
    Item("9a", "Choice of initial predictors (inputs)", "model", ("input",)),
    Item("9b", "Definition and measurement of every predictor", "model", ("input",),
         ("acquisition",)),
    Item("9c", "Qualifications of predictor assessors", "author", (), ("annotators",)),
    Item("10", "How the study size was arrived at", "data", ("counts",), ("sample_size",)),
    Item("11", "Handling of missing data, reasons for omitting data", "characteristics",
         ("characteristics", "flow"), ("missing_data",)),
    Item("12a", "How data were used: partitions for development and evaluation", "split",
         ("split",)),
    Item("12b", "How predictors were handled (scaling, transforms)", "model", ("input",)),
    Item("12c", "Model type, building steps, tuning, internal validation", "training",
         ("model", "training", "selection")),
    Item("12d", "Heterogeneity across clusters (hospitals, countries)", "author", (),
         ("external_validation",)),
    Item("12e", "Performance measures and plots, and their rationale", "performance",
         ("metrics", "calibration")),
    Item("12f", "Model updating (e.g. recalibration) after evaluation", "training",
         ("fitted",)),
    Item("12g", "How predictions were computed for evaluation", "training", ("fitted",)),
    Item("13", "Class imbalance methods and recalibration", "training", ("training",)),
    Item("14", "Approaches to fairness", "subgroups", ("robustness",), ("fairness",)),
    Item("15", "Model output and how any thresholds were chosen", "performance",
         ("fitted", "metrics")),
    Item("16", "Differences between development and evaluation data", "characteristics",
         ("characteristics",)),
    Item("17", "Ethics approval and consent", "author", (), ("ethics",)),
    Item("18a", "Funding", "author", (), ("funding",)),
    Item("18b", "Conflicts of interest", "author", (), ("conflicts",)),
    Item("18c", "Protocol", "author", (), ("protocol",)),
    Item("18d", "Registration", "author", (), ("registration",)),
    Item("18e", "Data sharing", "author", (), ("data_availability",)),
    Item("18f", "Code sharing", "author", (), ("code_availability",)),
    Item("19", "Patient and public involvement", "author", (), ("patient_involvement",)),
    Item("20a", "Flow of participants, with and without the outcome", "flow", ("flow",)),
    Item("20b", "Characteristics per data source, missing data", "characteristics",
         ("characteristics",)),
    Item("20c", "Evaluation data compared with development data", "characteristics",
         ("characteristics",)),
    Item("21", "Participants and outcome events in each analysis", "data", ("counts",)),
    Item("22", "Full model specification for reuse", "model", ("model", "software")),
    Item("23a", "Performance with intervals, also in key subgroups", "performance",
         ("intervals", "subgroups")),
    Item("23b", "Heterogeneity of performance across clusters", "author", (),
         ("external_validation",)),
    Item("24", "Results of any model updating", "training", ("fitted",)),
    Item("25", "Overall interpretation, fairness included", "author", (),
         ("manuscript", "fairness")),
    Item("26", "Limitations and their effect on bias and uncertainty", "limitations",
         ("limitations",), ("manuscript",)),
    Item("27a", "How poor or missing input data are handled in use", "author", (),
         ("missing_data",)),
    Item("27b", "User interaction and expertise needed", "author", (), ("intended_use",)),
    Item("27c", "Next steps: applicability and generalisability", "author", (),
         ("implications",)),
)


def item_status(item: Item, facts: set[str], supplied: set[str]) -> str:
    """filled from the run / partly / author must supply, for this run and author fields."""
    run_have = [key in facts for key in item.run]
    author_have = [key in supplied for key in item.author]
    every = run_have + author_have
    if every and all(every):
        return FILLED
    if any(run_have) or any(author_have):
        return PARTLY
    return AUTHOR


def checklist_rows(items: tuple[Item, ...], facts: set[str],
                   supplied: set[str]) -> list[dict[str, str]]:
    """One row per item: number, topic, status, where in the card."""
    return [{"number": item.number, "topic": item.topic,
             "status": item_status(item, facts, supplied), "where": item.where}
            for item in items]
