"""Server-rendered pages of layer 1: sign-up (accounts) and the representatives' portal."""
