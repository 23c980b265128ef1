"""Drives stowage's web dashboard in a real headless Chromium (Selenium, the driver path
given, nothing downloaded) and fails on any browser console error.

    ui_browser.py CONFIG.json

CONFIG: base, chromium, chromedriver, downloads (a folder), screenshots (a folder),
admin_key (for /v1), admin / reader: {email, password}, series (two backups and a
keep-last-one policy), long_series (more backups than a page), backup_id, backup_size,
file_path (a file inside the backup), file_sha256.
"""
import hashlib
import json
import os
import sys
import tarfile
import time

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import Select, WebDriverWait

cfg = json.load(open(sys.argv[1]))
base = cfg["base"]

options = webdriver.ChromeOptions()
options.binary_location = cfg["chromium"]
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,1000", "--no-first-run", "--disable-extensions"]:
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
options.add_experimental_option("prefs", {
    "download.default_directory": cfg["downloads"],
    "download.prompt_for_download": False,
})
driver = webdriver.Chrome(service=Service(executable_path=cfg["chromedriver"]), options=options)
driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                       {"behavior": "allow", "downloadPath": cfg["downloads"]})


def check_console(where):
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"{where}: browser console errors: {errors}"


def shot(name):
    driver.save_screenshot(os.path.join(cfg["screenshots"], f"{name}.png"))


def wait_for(what, condition, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; page: {driver.current_url}\n{driver.page_source[:3000]}")


def click(element):
    """Clicks a link or button that loads a page, and waits until the new page is there."""
    element.click()

    def replaced(_):
        # While the page is being replaced ChromeDriver may answer a look at the old
        # element with "node does not belong to the document" instead of "stale".
        try:
            element.is_enabled()
            return False
        except WebDriverException:
            return True

    WebDriverWait(driver, 20).until(replaced)


def go(path):
    driver.get(base + path)
    check_console(path)


def sign_in(who, password):
    go("/ui/")
    assert driver.current_url.endswith("/ui/login"), driver.current_url
    driver.find_element(By.NAME, "email").send_keys(cfg[who]["email"])
    driver.find_element(By.NAME, "password").send_keys(password)
    click(driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    check_console(f"sign-in as {who}")


def session_cookie():
    return {"stowage_ui": driver.get_cookie("stowage_ui")["value"]}


def page_csrf():
    return driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")


try:
    # A wrong password is refused on the form; the right one opens the overview.
    sign_in("admin", "not the password")
    problem = driver.find_element(By.ID, "login-problem").text
    assert "Wrong email or password" in problem, problem
    shot("sign-in")
    sign_in("admin", cfg["admin"]["password"])
    assert driver.find_element(By.TAG_NAME, "h1").text == "Overview", driver.page_source[:2000]

    # The overview's figures are the API's.
    stats = requests.get(base + "/v1/repository/stats",
                         headers={"Authorization": "Bearer " + cfg["admin_key"]}).json()
    go("/ui/")
    for element, field in [("stat-backups", "backups"), ("stat-chunks", "chunks"),
                           ("stat-logical", "logical_bytes"), ("stat-stored", "stored_bytes")]:
        shown = driver.find_element(By.ID, element).get_attribute("data-value")
        assert shown == str(stats[field]), f"{element}: page {shown}, API {stats[field]}"
    # The storage answers; the chart has the first day's sample (taken after the start).
    reachable = driver.find_element(By.ID, "health-reachable").text
    assert reachable.startswith("yes"), reachable
    assert driver.find_element(By.ID, "health-free").text[0].isdigit()
    chart = wait_for("the first figures' sample", lambda: (driver.refresh() or True) and
                     driver.find_elements(By.ID, "stored-chart"))
    assert chart[0].get_attribute("data-days") == "1", chart[0].get_attribute("data-days")
    shot("overview")

    # Series → backup → folders → one file, downloaded byte-exact.
    click(driver.find_element(By.LINK_TEXT, cfg["series"]))
    check_console("series page")
    verdicts = sorted(c.text for c in driver.find_elements(By.CSS_SELECTOR, "td.verdict"))
    assert verdicts == ["keep", "remove"], f"retention preview: {verdicts}"
    shot("series")
    # Applying the policy recycles the older backup; the preview then keeps all.
    click(driver.find_element(By.XPATH, "//button[text()='Apply the policy']"))
    check_console("apply retention")
    verdicts = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "td.verdict")]
    assert verdicts == ["keep"], f"after applying: {verdicts}"
    states = sorted(row.find_elements(By.TAG_NAME, "td")[-1].text
                    for row in driver.find_elements(By.CSS_SELECTOR, "table.backups tbody tr"))
    assert states == ["kept", "recycled"], states
    click(driver.find_element(By.CSS_SELECTOR, "table.backups td a"))
    check_console("backup page")
    assert driver.find_element(By.ID, "backup-id").text == cfg["backup_id"]
    *folders, name = cfg["file_path"].split("/")
    for folder in folders:
        click(driver.find_element(By.LINK_TEXT, folder + "/"))
        check_console(f"folder {folder}")
    shot("backup")
    # Found by name from the backup page, in whatever folder.
    box = driver.find_element(By.CSS_SELECTOR, "input[name=q]")
    box.send_keys(name.upper()[:4])
    click(driver.find_element(By.XPATH, "//button[text()='Find']"))
    check_console("search")
    found = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "table.catalog a.file")]
    assert found == [cfg["file_path"]], f"search found {found}"
    shot("search")
    # A signed link downloads the whole backup without signing in.
    click(driver.find_element(By.XPATH, "//button[text()='Create a download link']"))
    check_console("signed link")
    link = driver.find_element(By.ID, "signed-link").get_attribute("value")
    fetched = requests.get(link)
    assert fetched.status_code == 200, (link, fetched.status_code)
    assert len(fetched.content) == cfg["backup_size"], len(fetched.content)
    tampered = requests.get(link.replace("expires=", "expires=1"))
    assert tampered.status_code == 403, tampered.status_code
    driver.back()
    click(driver.find_element(By.LINK_TEXT, "back to the folders"))
    # Recycled and taken back out, from the backup page.
    click(driver.find_element(By.XPATH, "//button[text()='Recycle']"))
    check_console("recycle")
    click(driver.find_element(By.XPATH, "//button[text()='Take out of the recycle bin']"))
    check_console("undelete")
    assert driver.find_elements(By.XPATH, "//button[text()='Recycle']"), "back out of the bin"
    for folder in folders:
        click(driver.find_element(By.LINK_TEXT, folder + "/"))
    driver.find_element(By.LINK_TEXT, name).click()
    target = os.path.join(cfg["downloads"], name)
    wait_for("the download", lambda: os.path.exists(target)
             and not any(f.endswith(".crdownload") for f in os.listdir(cfg["downloads"])))
    with open(target, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest == cfg["file_sha256"], f"downloaded {digest}, stored {cfg['file_sha256']}"
    check_console("download")
    # The file's folder as a tar archive, named after the folder.
    driver.find_element(By.ID, "folder-tar").click()
    folder_tar = os.path.join(cfg["downloads"], folders[-1] + ".tar")
    wait_for("the folder download", lambda: os.path.exists(folder_tar)
             and not any(f.endswith(".crdownload") for f in os.listdir(cfg["downloads"])))
    with tarfile.open(folder_tar) as archive:
        names = archive.getnames()
        assert names == [folders[-1], folders[-1] + "/" + name], names
        inner = archive.extractfile(folders[-1] + "/" + name).read()
    assert hashlib.sha256(inner).hexdigest() == cfg["file_sha256"], "the folder's file differs"
    check_console("folder download")

    # The running upload is cancelled from the jobs page.
    go("/ui/jobs")
    rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-job]")
    running = [r for r in rows if r.find_element(By.CSS_SELECTOR, "td.status").text == "running"]
    assert running, "no running job on the jobs page"
    shot("jobs")
    click(running[0].find_element(By.CSS_SELECTOR, "form button"))
    check_console("cancel")
    wait_for("the job to end cancelled", lambda: (driver.refresh() or True) and
             driver.find_element(By.CSS_SELECTOR, "td.status").text == "cancelled")
    check_console("cancelled job page")

    # The jobs list filters by status, kind and text, from the form.
    go("/ui/jobs")
    Select(driver.find_element(By.NAME, "status")).select_by_value("cancelled")
    click(driver.find_element(By.XPATH, "//form[@id='job-filters']//button"))
    check_console("job filter")
    statuses = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "tr[data-job] td.status")]
    assert statuses and set(statuses) == {"cancelled"}, statuses
    assert "status=cancelled" in driver.current_url, driver.current_url
    shot("jobs-filtered")
    Select(driver.find_element(By.NAME, "kind")).select_by_value("gc")
    click(driver.find_element(By.XPATH, "//form[@id='job-filters']//button"))
    assert driver.find_element(By.ID, "no-jobs").text == "No job matches."
    field = driver.find_element(By.NAME, "q")
    Select(driver.find_element(By.NAME, "kind")).select_by_value("")
    field.clear()
    field.send_keys("SLOW")
    click(driver.find_element(By.XPATH, "//form[@id='job-filters']//button"))
    subjects = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "tr[data-job] td:nth-child(2)")]
    assert subjects and all("slow" in s for s in subjects), subjects
    check_console("job text filter")

    # A gc dry run from the maintenance page ends with its report.
    go("/ui/maintenance")
    shot("maintenance")
    button = [b for b in driver.find_elements(By.CSS_SELECTOR, "form button")
              if b.text == "Gc dry run"]
    assert button, "no gc dry run button"
    click(button[0])
    check_console("gc dry run")
    report = wait_for("the gc report", lambda: (driver.refresh() or True) and
                      driver.find_elements(By.ID, "job-result"))
    result = json.loads(report[0].text)
    assert result["dry_run"] is True, result
    shot("gc-dry-run")

    # Keys: one created (its secret shown once, and working), then revoked.
    click(driver.find_element(By.LINK_TEXT, "Keys and users"))
    check_console("keys and users")
    driver.find_element(By.NAME, "name").send_keys("agent")
    click(driver.find_element(By.XPATH, "//button[text()='Create key']"))
    check_console("key created")
    secret = driver.find_element(By.ID, "new-key").text.strip()
    assert len(secret) == 81 and secret[16] == ".", secret
    shot("keys-and-users")
    with_key = lambda: requests.get(base + "/v1/backups",
                                    headers={"Authorization": "Bearer " + secret}).status_code
    assert with_key() == 200
    go("/ui/admin")
    assert not driver.find_elements(By.ID, "new-key"), "the secret is shown only once"
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-key="{secret[:16]}"]')
    click(row.find_element(By.CSS_SELECTOR, "form button"))
    check_console("key revoked")
    state = driver.find_element(By.CSS_SELECTOR, f'tr[data-key="{secret[:16]}"] td.state').text
    assert state == "revoked", state
    assert with_key() == 401

    # A user created and deleted (an email with characters a path must escape).
    temp = "ops+night@example.com"
    form = driver.find_element(By.CSS_SELECTOR, "form.create[action='/ui/admin/users']")
    form.find_element(By.NAME, "email").send_keys(temp)
    form.find_element(By.NAME, "password").send_keys("night-password-1")
    click(form.find_element(By.CSS_SELECTOR, "button"))
    check_console("user created")
    users = lambda: [r.find_element(By.TAG_NAME, "td").text
                     for r in driver.find_elements(By.CSS_SELECTOR, "table.users tbody tr")]
    assert temp in users(), users()
    row = [r for r in driver.find_elements(By.CSS_SELECTOR, "table.users tbody tr")
           if r.find_element(By.TAG_NAME, "td").text == temp][0]
    click(row.find_element(By.CSS_SELECTOR, "form button"))
    check_console("user deleted")
    assert temp not in users(), users()

    # A form posted without this page's CSRF token is refused, with a valid session.
    cookies = session_cookie()
    assert requests.get(base + "/ui/jobs", cookies=cookies).status_code == 200
    for data in [{"dry_run": "true"}, {"dry_run": "true", "csrf": "0" * 64}]:
        refused = requests.post(base + "/ui/maintenance/gc", data=data, cookies=cookies,
                                allow_redirects=False)
        assert refused.status_code == 403, (data, refused.status_code, refused.text[:500])

    # The dialects page says which are on and how to point their clients here.
    click(driver.find_element(By.LINK_TEXT, "Dialects"))
    check_console("dialects")
    on = {s.get_attribute("id") for s in driver.find_elements(By.CSS_SELECTOR, "section.dialect")
          if s.get_attribute("data-enabled") == "true"}
    assert on == set(cfg["dialects_on"]), on
    steps = driver.find_element(By.ID, "dialect-backupchan").text
    port = base.rsplit(":", 1)[1]
    assert f"-p {port}" in steps, steps
    shot("dialects")

    # A long series opens a page at a time, newest first.
    go("/ui/series/" + cfg["long_series"])
    check_console("long series")
    first_page = driver.find_elements(By.CSS_SELECTOR, "table.backups tbody tr")
    assert len(first_page) == 50, len(first_page)
    click(driver.find_element(By.ID, "older"))
    check_console("older backups")
    second_page = driver.find_elements(By.CSS_SELECTOR, "table.backups tbody tr")
    assert len(second_page) == 3, len(second_page)
    assert not driver.find_elements(By.ID, "older"), "a link past the last page"

    # Sign out; a reader sees no purge, may not purge, and has no maintenance.
    click(driver.find_element(By.CSS_SELECTOR, "form.signout button"))
    check_console("sign-out")
    assert driver.current_url.endswith("/ui/login"), driver.current_url
    sign_in("reader", cfg["reader"]["password"])
    go("/ui/backups/" + cfg["backup_id"])
    assert not driver.find_elements(By.PARTIAL_LINK_TEXT, "Purge"), "a reader is offered purge"
    assert not driver.find_elements(By.LINK_TEXT, "Maintenance")
    cookies, csrf = session_cookie(), page_csrf()
    refused = requests.post(base + f"/ui/backups/{cfg['backup_id']}/purge",
                            data={"csrf": csrf}, cookies=cookies, allow_redirects=False)
    assert refused.status_code == 403, (refused.status_code, refused.text[:500])
    assert requests.get(base + "/ui/maintenance", cookies=cookies).status_code == 403
    still = requests.get(base + "/v1/backups/" + cfg["backup_id"],
                         headers={"Authorization": "Bearer " + cfg["admin_key"]})
    assert still.status_code == 200, "the backup is still there"
    check_console("reader")
    print("ui ok")
finally:
    driver.quit()
