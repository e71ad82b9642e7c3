#!/usr/bin/env python3
"""Golden chat-template renderings from transformers itself.

For each family of templates.py: a tiny tokenizer folder (a word-level
tokenizer.json trained on nothing, the family's special tokens and chat
template, saved by transformers and then stored the way the family's entry
says), loaded back with AutoTokenizer, and apply_chat_template(messages,
tokenize=False, add_generation_prompt=...) over every conversation of
conversations.json, with and without the generation prompt; and the small
templates of jinja_cases.json (each Jinja feature alone, with its
variables) rendered in transformers' own Jinja environment. Writes
<family>/ (the folders) and expected.json: family -> conversation ->
{"gen": text, "nogen": text} and "_jinja_cases" -> case -> text, a text being {"error": message, "raised":
bool} when rendering fails ("raised": by the template's raise_exception). A Llama 3.2 rendering without date_string holds the day's
date from strftime_now: it is stored as @@TODAY@@ (the C test puts the
current "%d %b %Y" there).

Run from anywhere with a Python that has transformers, tokenizers and
jinja2 (e.g. /tmp/hfvenv/bin/python); regenerate only with this script.
"""
import datetime
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from templates import FAMILIES  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402


def make_folder(name, template, bos, eos, storage):
    folder = os.path.join(HERE, name)
    shutil.rmtree(folder, ignore_errors=True)
    specials = ["<unk>", eos] + ([bos] if bos else [])
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(specials + ["hello", "world"]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    kwargs = {"eos_token": eos, "unk_token": "<unk>"}
    if bos:
        kwargs["bos_token"] = bos
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.chat_template = template
    fast.save_pretrained(folder)

    config_path = os.path.join(folder, "tokenizer_config.json")
    jinja_path = os.path.join(folder, "chat_template.jinja")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    if storage != "jinja":
        # older transformers kept the template in tokenizer_config.json
        if os.path.exists(jinja_path):
            os.remove(jinja_path)
        if storage == "string":
            config["chat_template"] = template
        else:
            config["chat_template"] = [
                {"name": "default", "template": template},
                {"name": "tool_use", "template": "{{ 'not the default' }}"},
            ]
        # and wrote special tokens as AddedToken objects
        for key in ("bos_token", "eos_token"):
            if isinstance(config.get(key), str):
                config[key] = {"__type": "AddedToken", "content": config[key], "lstrip": False,
                               "normalized": False, "rstrip": False, "single_word": False}
        if name == "tinyllama-zephyr":
            # the legacy special_tokens_map.json, whose tokens win over the
            # config's when the config has no added_tokens_decoder
            assert "added_tokens_decoder" not in config
            config["eos_token"] = "</not-this>"
            with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
                json.dump({"eos_token": {"content": eos, "lstrip": False, "normalized": False,
                                         "rstrip": False, "single_word": False}}, f, indent=2)
                f.write("\n")
    else:
        assert os.path.exists(jinja_path), "transformers did not write chat_template.jinja"
        config.pop("chat_template", None)
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return folder


def error_of(e):
    """{"error": message, "raised": whether the template's raise_exception
    raised it (then flashgpt must repeat the message; for a Python error
    such as a TypeError only the failure itself must match)}."""
    raised = type(e).__name__ == "TemplateError"
    return {"error": str(e), "raised": raised}


def render(tok, conversation, gen):
    if isinstance(conversation, dict):
        kwargs = {k: v for k, v in conversation.items() if k != "messages"}
        messages = conversation["messages"]
    else:
        kwargs, messages = {}, conversation
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **kwargs)
    except Exception as e:  # the template's raise_exception, or a bad value
        return error_of(e)


def main():
    with open(os.path.join(HERE, "conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)
    today = datetime.datetime.now().strftime("%d %b %Y")
    expected = {}
    for name, (template, bos, eos, storage) in FAMILIES.items():
        folder = make_folder(name, template, bos, eos, storage)
        tok = AutoTokenizer.from_pretrained(folder)
        loaded = tok.chat_template
        if isinstance(loaded, dict):
            loaded = loaded["default"]
        assert loaded == template, f"{name}: the template did not survive the folder"
        expected[name] = {}
        for conv_name, conv in conversations.items():
            out = {}
            for key, gen in (("gen", True), ("nogen", False)):
                text = render(tok, conv, gen)
                if isinstance(text, str) and "strftime_now" in template:
                    assert today in text or "date_string" in json.dumps(conv)
                    text = text.replace(today, "@@TODAY@@")
                out[key] = text
            expected[name][conv_name] = out
    # small templates for the Jinja features one by one, rendered by the
    # environment transformers compiles chat templates in
    from transformers.utils.chat_template_utils import _compile_jinja_template

    with open(os.path.join(HERE, "jinja_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    expected["_jinja_cases"] = {}
    for case, (template, variables) in cases.items():
        try:
            text = _compile_jinja_template(template).render(**variables)
        except Exception as e:
            text = error_of(e)
        expected["_jinja_cases"][case] = text
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"transformers {transformers.__version__}: {len(FAMILIES)} families x "
          f"{len(conversations)} conversations")


if __name__ == "__main__":
    main()
