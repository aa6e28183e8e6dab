"""Where rows come from: the Kaggle file, consented submissions, and the check that quarantines them."""
