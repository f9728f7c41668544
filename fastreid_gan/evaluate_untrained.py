"""Evaluate a config's model with random weights: the floor that training must beat.

    python -m fastreid_gan.evaluate_untrained --config-file configs/Synthetic/baseline_market.yml OUTPUT_DIR out
"""
from fastreid_gan.runner import argument_parser, evaluate_only, seed_everything, setup_cfg, setup_logging_and_output


def main() -> None:
    args = argument_parser().parse_args()
    args.eval_only = True
    cfg = setup_cfg(args)
    setup_logging_and_output(cfg, args)
    seed_everything(max(cfg.SEED, 0))
    evaluate_only(cfg, random_init=True)


if __name__ == "__main__":
    main()
