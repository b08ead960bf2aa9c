def test_login_page_renders_in_chromium(page, live_server):
    page.goto("/accounts/login/")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert page.get_by_label("Username").is_visible()
