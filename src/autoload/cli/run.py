"""`autoload run TASK MODEL INPUTS...`: run a pipeline on inputs and print the results (or JSON)."""

from __future__ import annotations

import json

from .options import add_model_hub_options, model_hub_kwargs


def add_parser(sub):
    p = sub.add_parser("run", help="run a pipeline on inputs and print the results")
    p.add_argument("task", help="fill-mask, feature-extraction, sentence-embeddings, text-classification, "
                                "token-classification, text-generation")
    p.add_argument("model", help="repo id or folder")
    p.add_argument("inputs", nargs="+", help="input texts")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--top-k", type=int, help="candidates per mask / labels per text")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="another task option (value parsed as JSON when possible), repeatable")
    add_model_hub_options(p)
    return p


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"-o {text!r}: write options as KEY=VALUE, e.g. -o aggregation_strategy=simple")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(args) -> int:
    from ..pipelines import pipeline
    from ..pipelines.output import describe, to_json
    options = dict(_option(text) for text in args.option)
    if args.top_k is not None:
        options["top_k"] = args.top_k
    pipe = pipeline(args.task, model=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                    **model_hub_kwargs(args))
    single = len(args.inputs) == 1
    results = pipe(args.inputs[0] if single else args.inputs, **options)
    if args.json:
        print(to_json(results))
        return 0
    for text, result in zip(args.inputs, [results] if single else results):
        print(text)
        print(describe(pipe.task, result))
    return 0
