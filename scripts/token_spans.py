"""Rule token_spans: sentences of one trace -> token spans under both rules, boundary report."""

from anchorflow.data.rollouts import get_record
from anchorflow.io import read_json, write_json
from anchorflow.models.loading import load_tokenizer
from anchorflow.sentences import token_spans
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
spec = snakemake.params.model
sentences = read_json(snakemake.input.sentences)
record = get_record(snakemake.input.records, spec["rollouts"], snakemake.wildcards.trace)
tokenizer = load_tokenizer(spec)
spans = token_spans(
    tokenizer, record["full_cot"], [tuple(span) for span in sentences["char_spans"]]
)
chosen = spans.offsets if snakemake.params.rule == "offsets" else spans.prefix
log.info(
    "%s: %d tokens, %d sentences, %d spans differ between the two rules",
    snakemake.wildcards.trace,
    spans.n_tokens,
    len(chosen),
    len(spans.disagreements),
)
write_json(
    snakemake.output[0],
    {
        "trace": snakemake.wildcards.trace,
        "model": snakemake.wildcards.model,
        "rule": snakemake.params.rule,
        "token_spans": chosen,
        "offsets_spans": spans.offsets,
        "prefix_spans": spans.prefix,
        "n_tokens": spans.n_tokens,
        "report": {
            "n_disagreements": len(spans.disagreements),
            "disagreements": spans.disagreements,
        },
        "params": {"rule": snakemake.params.rule, "model": spec, "variant": sentences["variant"]},
    },
)
