"""Avito Demand Prediction Challenge (Kaggle 2018): classified ads to deal_probability."""
