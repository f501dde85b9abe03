"""`python -m tailorlm.train.worker --project P --run RUN`: one process of an accelerate launch."""

from tailorlm.train.scaleout import main

if __name__ == "__main__":
    main()
