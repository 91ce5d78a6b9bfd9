"""Reports: the paper's tables from the evaluation metrics, published numbers beside ours."""
