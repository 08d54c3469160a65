"""Review pages: interactive NiiVue views of positioned series and spine composites."""
