//! The label words of LLM-Adapters' commonsense tasks, which set a file of records uses, and the
//! answer a model's text gives (`extract_answer` of LLM-Adapters' `commonsense_evaluate.py`).

use std::path::Path;

use crate::data::instructions::InstructionRecord;

/// The label words of one answer format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelSet {
    /// The tasks that answer in these words, by their LLM-Adapters dataset names (lower case).
    pub tasks: &'static [&'static str],
    pub labels: &'static [&'static str],
}

/// Every answer format of the eight tasks (the paper's Table 3).
pub const LABEL_SETS: [LabelSet; 5] = [
    LabelSet { tasks: &["boolq"], labels: &["true", "false"] },
    LabelSet { tasks: &["piqa"], labels: &["solution1", "solution2"] },
    LabelSet {
        tasks: &["social_i_qa", "arc-challenge", "arc-easy", "openbookqa"],
        labels: &["answer1", "answer2", "answer3", "answer4", "answer5"],
    },
    LabelSet { tasks: &["hellaswag"], labels: &["ending1", "ending2", "ending3", "ending4"] },
    LabelSet { tasks: &["winogrande"], labels: &["option1", "option2"] },
];

impl LabelSet {
    /// The words joined as the regular expression of LLM-Adapters reads (`true|false`).
    pub fn describe(&self) -> String {
        self.labels.join("|")
    }

    /// The first label word in `text` (the leftmost; at one position, the first of the list, as a
    /// regex alternation matches), case-sensitive as LLM-Adapters' `re.findall`.
    pub fn first_match(&self, text: &str) -> Option<&'static str> {
        self.labels.iter().filter_map(|&label| text.find(label).map(|at| (at, label))).min_by_key(|&(at, _)| at).map(|(_, label)| label)
    }
}

/// The label set of a file of records: the task its path names (`dataset/boolq/test.json`, as
/// LLM-Adapters lays the sets out, or `boolq.json`), else the one set that holds every record's
/// `answer`. Every record must have an answer of that set; the error says which does not.
pub fn label_set(path: &Path, records: &[InstructionRecord]) -> Result<LabelSet, String> {
    let named = path.iter().filter_map(|part| Path::new(part).file_stem()?.to_str()).find_map(|part| {
        let part = part.to_lowercase();
        LABEL_SETS.iter().find(|set| set.tasks.contains(&part.as_str())).copied()
    });
    let answers: Vec<(usize, Option<&str>)> = records.iter().enumerate().map(|(i, r)| (i + 1, r.answer.as_deref())).collect();
    if let Some((record, _)) = answers.iter().find(|(_, answer)| answer.is_none()) {
        return Err(format!("record {record} has no `answer` (the label to score against)"));
    }
    let fits = |set: &LabelSet| answers.iter().all(|(_, answer)| answer.is_some_and(|a| set.labels.contains(&a)));
    let set = match named {
        Some(set) => set,
        None => *LABEL_SETS.iter().find(|set| fits(set)).ok_or_else(|| {
            let formats: Vec<String> = LABEL_SETS.iter().map(LabelSet::describe).collect();
            format!(
                "the answers match none of the label formats ({}); name the file or its directory after its task (boolq, piqa, \
                 social_i_qa, ARC-Challenge, ARC-Easy, openbookqa, hellaswag, winogrande)",
                formats.join(", ")
            )
        })?,
    };
    match answers.iter().find(|(_, answer)| answer.is_some_and(|a| !set.labels.contains(&a))) {
        Some((record, Some(answer))) => Err(format!("record {record}: the answer `{answer}` is not one of {}", set.describe())),
        _ => Ok(set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(answers: &[&str]) -> Vec<InstructionRecord> {
        answers
            .iter()
            .map(|a| InstructionRecord { instruction: "q".to_owned(), input: None, output: None, answer: Some((*a).to_owned()) })
            .collect()
    }

    #[test]
    fn the_first_label_in_the_text_is_the_answer() {
        let [boolq, _, answers, ..] = LABEL_SETS;
        assert_eq!(boolq.first_match("the correct answer is false, not true"), Some("false"));
        assert_eq!(boolq.first_match("truefalse"), Some("true"));
        assert_eq!(boolq.first_match("True"), None);
        assert_eq!(answers.first_match("answer3 or answer1"), Some("answer3"));
        assert_eq!(answers.first_match("the answer is 3"), None);
    }

    #[test]
    fn the_label_set_comes_from_the_path_or_the_answers() {
        let set = |path: &str, answers: &[&str]| label_set(Path::new(path), &records(answers));
        assert_eq!(set("dataset/boolq/test.json", &["true", "false"]).unwrap().labels, &["true", "false"]);
        assert_eq!(set("data/ARC-Easy/test.json", &["answer4"]).unwrap().labels.len(), 5);
        assert_eq!(set("winogrande.jsonl", &["option2"]).unwrap().labels, &["option1", "option2"]);
        assert_eq!(set("mine/test.json", &["ending2", "ending4"]).unwrap().labels.len(), 4);
        let error = set("dataset/boolq/test.json", &["true", "yes"]).unwrap_err();
        assert!(error.contains("record 2") && error.contains("`yes`") && error.contains("true|false"), "{error}");
        let error = set("mine/test.json", &["true", "answer1"]).unwrap_err();
        assert!(error.contains("match none of the label formats"), "{error}");
        let mut missing = records(&["true"]);
        missing[0].answer = None;
        assert!(label_set(Path::new("boolq.json"), &missing).unwrap_err().contains("record 1 has no `answer`"));
    }
}
