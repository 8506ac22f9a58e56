"""IAM for ses-proxy: the policy generator, its linter, an evaluator to test them with."""
