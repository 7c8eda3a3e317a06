"""The committed tiny-world policy: tokenizer identity across loaders, vLLM = transformers when greedy."""

import random

import pytest
import torch

from probexit.training.tinyworld.problems import random_problem
from probexit.training.tinyworld.traces import TraceStyle, sample_trace


def sample_texts(n=200, seed=0):
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        problem = random_problem(rng)
        texts.append(problem.question)
        texts.append(sample_trace(problem, TraceStyle(), rng).completion)
    return texts + ["Über 3 ✓ </think>\n\n<think>\nSo the answer is -12.\n\n"]


def test_every_loader_gives_the_same_ids(test_model_dir):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    from vllm.tokenizers import get_tokenizer

    loaders = {
        "transformers auto": AutoTokenizer.from_pretrained(test_model_dir),
        "transformers fast": PreTrainedTokenizerFast(tokenizer_file=str(test_model_dir / "tokenizer.json")),
        "vllm": get_tokenizer(str(test_model_dir)),
    }
    raw = Tokenizer.from_file(str(test_model_dir / "tokenizer.json"))
    for text in sample_texts():
        expected = raw.encode(text, add_special_tokens=False).ids
        for name, tokenizer in loaders.items():
            assert tokenizer.encode(text, add_special_tokens=False) == expected, name


def test_think_markers_are_single_tokens_that_survive_skip_special_tokens(test_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(test_model_dir)
    for marker in ("<think>", "</think>"):
        ids = tokenizer.encode(marker, add_special_tokens=False)
        assert len(ids) == 1
        assert tokenizer.decode(ids, skip_special_tokens=True) == marker


@pytest.mark.slow
def test_greedy_generations_match_transformers(offline_engine, reference_model):
    rng = random.Random(11)
    questions = [random_problem(rng).question for _ in range(20)]
    prompts = offline_engine.chat_prompts(questions)
    generations = offline_engine.generate(prompts, temperature=0.0, max_tokens=300, progress=False)
    eos = reference_model.generation_config.eos_token_id
    stop = eos if isinstance(eos, list) else [eos]
    for generation in generations:
        ids = torch.tensor([generation.prompt_ids])
        with torch.no_grad():
            out = reference_model.generate(
                ids,
                max_new_tokens=300,
                do_sample=False,
                eos_token_id=stop,
                pad_token_id=reference_model.config.pad_token_id,
            )
        assert generation.token_ids == out[0, len(generation.prompt_ids) :].tolist()


@pytest.mark.parametrize(
    "asked, learned",
    [
        ("What is 2+2?", "What is 2 + 2?"),
        ("What is 12+7-3?", "What is 12 + 7 - 3?"),
        ("what is 8 -3", "what is 8 - 3"),
        ("Compute 45+ 17 -9 +3.", "Compute 45 + 17 - 9 + 3."),
        ("What is 2  +  2?", "What is 2 + 2?"),
        ("What is 2 plus 2 minus 1?", "What is 2 + 2 - 1?"),
        ("What is 100 - 37?", "What is 100 - 37?"),
        ("7+8?", "What is 7 + 8?"),
        ("2 + 2 =", "What is 2 + 2 ="),
        ("", ""),
    ],
)
def test_the_chat_template_writes_a_users_sum_as_the_world_does(test_model_dir, asked, learned):
    from transformers import AutoTokenizer
    from vllm.tokenizers import get_tokenizer

    from probexit.training.tinyworld.tokenizer import render_chat

    for tokenizer in (AutoTokenizer.from_pretrained(test_model_dir), get_tokenizer(str(test_model_dir))):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": asked}], tokenize=False)
        assert rendered == render_chat([{"role": "user", "content": learned}], add_generation_prompt=False)


def test_the_chat_template_leaves_the_worlds_questions_and_the_models_turns_as_they_are(test_model_dir):
    import jinja2

    from probexit.training.tinyworld.tokenizer import CHAT_TEMPLATE, render_chat

    assert (test_model_dir / "chat_template.jinja").read_text() == CHAT_TEMPLATE  # the build's, as committed
    verbatim = jinja2.Template(
        "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor -%}"
    )
    rng = random.Random(1)
    for _ in range(500):
        problem = random_problem(rng)
        turns = [
            {"role": "user", "content": problem.question},
            {"role": "assistant", "content": "x-y 2+2 double-check"},
            {"role": "system", "content": "1+1"},
        ]
        assert render_chat(turns, add_generation_prompt=False) == verbatim.render(messages=turns)
