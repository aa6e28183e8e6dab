"""The risk check: the JSON API and the Gradio form, scoring with the champion, storing shared outcomes."""
