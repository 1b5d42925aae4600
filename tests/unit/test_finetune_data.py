"""finetune data validation and prompt encoding (loss only on answer tokens)."""

import json

import pytest

from finetune.data import DatasetError, load_examples, split
from finetune.train import IGNORE, encode

HEADER = "product_name,keywords,copy_text\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_keywords_and_language(tmp_path):
    rows = 'Bottle,"leak-proof|cold",Stay cool all day.\n咖啡机,"轻巧,户外",一键萃取，轻巧便携。\n'
    path = write(tmp_path, "d.csv", HEADER + rows)
    a, b = load_examples(path)
    assert (a.product, a.keywords, a.language) == ("Bottle", ("leak-proof", "cold"), "en")
    assert (b.keywords, b.language) == (("轻巧", "户外"), "zh")


def test_jsonl_with_keyword_lists(tmp_path):
    rows = [{"product_name": "Desk", "keywords": ["oak", "standing"], "copy_text": "Stand tall."}]
    (example,) = load_examples(write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n"))
    assert example.keywords == ("oak", "standing")


@pytest.mark.parametrize("text, says", [
    ("product,keywords,copy\nx,y,z\n", "missing column(s) product_name, copy_text"),
    (HEADER, "no rows"),
    (HEADER + "Bottle,a|b,\n", "line 2: empty product_name or copy_text"),
    (HEADER + "Bottle,a,Nice.\nbottle,b,nice.\n", "line 3: duplicate of line 2"),
])
def test_csv_problems_name_the_line_and_fix(tmp_path, text, says):
    with pytest.raises(DatasetError, match="d.csv") as info:
        load_examples(write(tmp_path, "d.csv", text))
    assert says in str(info.value)


def test_bad_jsonl_and_extension(tmp_path):
    with pytest.raises(DatasetError, match=r"d.jsonl:2: not valid JSON"):
        load_examples(write(tmp_path, "d.jsonl", '{"product_name": "a", "keywords": "", "copy_text": "b"}\n{oops\n'))
    with pytest.raises(DatasetError, match="use a .csv or .jsonl"):
        load_examples(write(tmp_path, "d.txt", "x"))


def test_split_is_seeded_and_keeps_both_sides(tmp_path):
    rows = "".join(f"P{i},k,Copy number {i}.\n" for i in range(20))
    examples = load_examples(write(tmp_path, "d.csv", HEADER + rows))
    train, held = split(examples, 0.15, seed=1)
    assert len(held) == 3 and len(train) == 17 and not set(train) & set(held)
    assert split(examples, 0.15, seed=1) == (train, held) != split(examples, 0.15, seed=2)
    with pytest.raises(DatasetError):
        split(examples[:1], 0.5, 0)


def test_encode_masks_the_prompt(tmp_path):
    from transformers import AutoTokenizer

    from contracts.config import models_home
    from deployments.text.prompts import TemplateLibrary
    from finetune.embedded_models import prepare

    folder = prepare(models_home(), ("smollm2-135m-instruct",))["smollm2-135m-instruct"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    (example,) = load_examples(write(tmp_path, "d.csv", HEADER + "Bottle,cold,Stay cool all day.\n"))
    features = encode(example, tokenizer, TemplateLibrary(), "ecommerce", max_length=512)
    answer = [t for t in features["labels"] if t != IGNORE]
    assert len(features["labels"]) == len(features["input_ids"])
    assert tokenizer.decode(answer).startswith("Stay cool all day.") and answer[-1] == tokenizer.eos_token_id
    assert features["input_ids"][-len(answer):] == answer
    assert features["labels"][0] == IGNORE
    short = encode(example, tokenizer, TemplateLibrary(), "ecommerce", max_length=40)
    assert len(short["input_ids"]) == 40
