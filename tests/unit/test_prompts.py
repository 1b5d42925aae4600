"""Prompt templates: the built-in library renders chat messages per language, tone and length."""

from __future__ import annotations

import shutil

import pytest

from deployments.text.prompts import BUILTIN_DIR, TemplateLibrary


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary()


def render(library, name="ecommerce", language="en", **kwargs):
    args = {"product": "Trail Shoes", "keywords": ["grippy", "light"], "tone": None, "length": "medium"}
    args.update(kwargs)
    return library.render(name, language, **args)


def test_builtin_templates_loaded(library):
    assert library.directory == BUILTIN_DIR
    assert set(library.templates) == {"ecommerce", "finance", "education"}
    assert library.templates["ecommerce"].labels == {"en": "E-commerce", "zh": "电商"}
    assert set(library.lengths) == {"short", "medium", "long"}


@pytest.mark.parametrize("name", ["ecommerce", "finance", "education"])
def test_render_gives_system_then_user(library, name):
    messages = render(library, name)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert all(m["content"] and m["content"] == m["content"].strip() for m in messages)
    assert "Trail Shoes" in messages[1]["content"]
    assert "Trail Shoes" not in messages[0]["content"]


def test_english_keywords_joined_with_comma(library):
    user = render(library, keywords=["grippy", "light", "waterproof"])[1]["content"]
    assert '"Trail Shoes"' in user
    assert "grippy, light, waterproof" in user


def test_chinese_keywords_joined_with_enumeration_comma(library):
    user = render(library, language="zh", product="便携式咖啡机", keywords=["轻巧", "户外"])[1]["content"]
    assert "“便携式咖啡机”" in user
    assert "轻巧、户外" in user


def test_no_keywords_leaves_out_the_keyword_line(library):
    assert "keywords" not in render(library, keywords=[])[1]["content"]
    assert "keywords" in render(library)[1]["content"]


def test_tone_default_and_override(library):
    assert "Tone: warm and persuasive." in render(library, tone=None)[1]["content"]
    assert "Tone: playful." in render(library, tone="playful")[1]["content"]
    assert "语气：亲切、有说服力。" in render(library, language="zh", tone=None)[1]["content"]


def test_length_hints_differ(library):
    users = {length: render(library, length=length)[1]["content"] for length in ("short", "medium", "long")}
    assert "about 40 words" in users["short"]
    assert "about 150 words" in users["long"]
    assert len(set(users.values())) == 3
    assert "约60字" in render(library, language="zh", length="short")[1]["content"]


def test_budget_grows_with_length(library):
    assert library.budget("short") < library.budget("medium") < library.budget("long")
    assert library.budget("medium") == library.lengths["medium"].max_tokens


def _custom_dir(tmp_path, user_en: str):
    shutil.copy(BUILTIN_DIR / "lengths.yaml", tmp_path / "lengths.yaml")
    (tmp_path / "retail.yaml").write_text(
        "labels: {en: Retail, zh: 零售}\n"
        f"en: {{system: 'You write.', user: {user_en!r}}}\n"
        "zh: {system: '你写。', user: '写{{ product }}'}\n",
        encoding="utf-8",
    )
    return tmp_path


def test_custom_template_dir(tmp_path):
    library = TemplateLibrary(_custom_dir(tmp_path, "Copy for {{ product }}"))
    assert set(library.templates) == {"retail"}
    assert render(library, "retail")[1]["content"] == "Copy for Trail Shoes"


def test_broken_jinja_names_the_file(tmp_path):
    directory = _custom_dir(tmp_path, "Copy for {{ product ")
    with pytest.raises(ValueError) as info:
        TemplateLibrary(directory)
    message = str(info.value)
    assert str(directory / "retail.yaml") in message
    assert "en.user" in message


def test_template_with_unknown_field_rejected(tmp_path):
    directory = _custom_dir(tmp_path, "ok")
    (directory / "extra.yaml").write_text("labels: {}\nen: {system: a, user: b}\nzh: {system: a, user: b}\nfoo: 1\n")
    with pytest.raises(ValueError, match="extra.yaml"):
        TemplateLibrary(directory)
