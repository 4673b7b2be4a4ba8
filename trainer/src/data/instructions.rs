//! Instruction data: records in the Alpaca / LLM-Adapters format (`instruction`, optional
//! `input`, `output`, and for evaluation `answer`), in a `.json` file (an array of records, as
//! LLM-Adapters' `commonsense_170k.json` and its `dataset/<task>/test.json`) or a `.jsonl` file
//! (one record per line), and the Alpaca prompt template they are rendered with.

use std::path::Path;

use serde::Deserialize;

use super::DataError;

/// The template's first paragraph for a record with an input.
const PREAMBLE_WITH_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. \
                                   Write a response that appropriately completes the request.";
/// The template's first paragraph for a record without one.
const PREAMBLE: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

/// One record. Fields other than these four are allowed and ignored (datasets carry ids and
/// metadata).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct InstructionRecord {
    pub instruction: String,
    /// Context for the instruction; empty or absent renders the template without the input block.
    #[serde(default)]
    pub input: Option<String>,
    /// The response trained on (`the correct answer is true`); required for training.
    #[serde(default)]
    pub output: Option<String>,
    /// The label the response should contain (`true`), for `fira eval --task choice`.
    #[serde(default)]
    pub answer: Option<String>,
}

impl InstructionRecord {
    /// The prompt the model continues: the Alpaca template (alpaca-lora's `templates/alpaca.json`,
    /// which LLM-Adapters' `generate_prompt` copies) up to and including `### Response:\n`. Its
    /// copy in LLM-Adapters' scripts also carries the Python source's indentation inside the
    /// string; that whitespace is an accident of the source and is not reproduced.
    pub fn prompt(&self) -> String {
        match self.input.as_deref().filter(|input| !input.is_empty()) {
            Some(input) => {
                format!("{PREAMBLE_WITH_INPUT}\n\n### Instruction:\n{}\n\n### Input:\n{input}\n\n### Response:\n", self.instruction)
            }
            None => format!("{PREAMBLE}\n\n### Instruction:\n{}\n\n### Response:\n", self.instruction),
        }
    }

    /// The whole record as text (prompt and response), e.g. to train a tokenizer on.
    pub fn text(&self) -> String {
        self.prompt() + self.output.as_deref().unwrap_or("")
    }
}

/// Whether `path` is a file of instruction records (`.json` or `.jsonl`).
pub fn is_record_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "json" || ext == "jsonl")
}

/// Every record of a `.json` or `.jsonl` file, in order; `output` is checked when `need_output`
/// (training), so that a bad record is reported with its place before anything is written.
pub fn read_records(path: &Path, need_output: bool) -> Result<Vec<InstructionRecord>, DataError> {
    if !is_record_file(path) {
        return Err(DataError::Unsupported { path: path.to_owned(), expected: "a .json or .jsonl file of instruction records" });
    }
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.to_owned(), source })?;
    let bad = |at: String, reason: String| DataError::BadRecord { path: path.to_owned(), at, reason };
    let values: Vec<(String, serde_json::Value)> = if path.extension().is_some_and(|ext| ext == "jsonl") {
        let lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
        lines
            .map(|(n, line)| {
                let at = format!("line {}", n + 1);
                serde_json::from_str(line).map(|value| (at.clone(), value)).map_err(|e| bad(at, format!("not JSON: {e}")))
            })
            .collect::<Result<_, _>>()?
    } else {
        match serde_json::from_str(&text) {
            Ok(serde_json::Value::Array(values)) => values.into_iter().enumerate().map(|(i, v)| (format!("record {}", i + 1), v)).collect(),
            Ok(_) => return Err(bad("the top level".to_owned(), "expected a JSON array of records".to_owned())),
            Err(e) => return Err(bad("the file".to_owned(), format!("not JSON: {e}"))),
        }
    };
    let mut records = Vec::with_capacity(values.len());
    for (at, value) in values {
        let record: InstructionRecord = serde_json::from_value(value).map_err(|e| bad(at.clone(), e.to_string()))?;
        if need_output && record.output.is_none() {
            return Err(bad(at, "missing field `output` (the response to train on)".to_owned()));
        }
        records.push(record);
    }
    if records.is_empty() {
        return Err(DataError::Empty { what: path.display().to_string() });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(input: Option<&str>) -> InstructionRecord {
        InstructionRecord {
            instruction: "Is 7 odd?".to_owned(),
            input: input.map(str::to_owned),
            output: Some("the correct answer is true".to_owned()),
            answer: Some("true".to_owned()),
        }
    }

    #[test]
    fn the_template_has_an_input_block_only_for_a_non_empty_input() {
        let without = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n\
                       ### Instruction:\nIs 7 odd?\n\n### Response:\n";
        assert_eq!(record(None).prompt(), without);
        assert_eq!(record(Some("")).prompt(), without);
        assert_eq!(
            record(Some("numbers")).prompt(),
            "Below is an instruction that describes a task, paired with an input that provides further context. Write a response \
             that appropriately completes the request.\n\n### Instruction:\nIs 7 odd?\n\n### Input:\nnumbers\n\n### Response:\n"
        );
        assert_eq!(record(None).text(), format!("{without}the correct answer is true"));
    }

    #[test]
    fn records_are_read_from_arrays_and_lines_and_bad_ones_are_placed() {
        let dir = tempfile::tempdir().unwrap();
        let array = dir.path().join("test.json");
        std::fs::write(&array, r#"[{"instruction": "a", "output": "b", "id": 3}, {"instruction": "c", "input": null, "answer": "x"}]"#)
            .unwrap();
        let records = read_records(&array, false).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].output.as_deref(), records[1].input.as_deref(), records[1].answer.as_deref()), (Some("b"), None, Some("x")));
        let error = read_records(&array, true).unwrap_err().to_string();
        assert!(error.contains("record 2") && error.contains("missing field `output`"), "{error}");

        let lines = dir.path().join("train.jsonl");
        std::fs::write(&lines, "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"output\": \"b\"}\n").unwrap();
        let error = read_records(&lines, true).unwrap_err().to_string();
        assert!(error.contains("line 3") && error.contains("instruction"), "{error}");
        std::fs::write(&lines, "{\"instruction\": \"a\", \"output\": \"b\"}\n").unwrap();
        assert_eq!(read_records(&lines, true).unwrap().len(), 1);

        std::fs::write(&array, "{\"instruction\": \"a\"}").unwrap();
        assert!(read_records(&array, false).unwrap_err().to_string().contains("expected a JSON array"));
        std::fs::write(&array, "[]").unwrap();
        assert!(matches!(read_records(&array, false), Err(DataError::Empty { .. })));
        assert!(matches!(read_records(&dir.path().join("a.txt"), false), Err(DataError::Unsupported { .. })));
    }
}
