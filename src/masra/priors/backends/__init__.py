"""Chat backends that turn OpenAI-style messages (text + base64 images) into a reply string."""
