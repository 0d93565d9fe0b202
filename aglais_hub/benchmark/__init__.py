"""The example notebooks as a benchmark: the suite (notebooks/examples/suite.yaml) says
what each notebook must print on the default sample catalogue and how long it should take;
`suite` loads it and checks a run's outputs against it."""
