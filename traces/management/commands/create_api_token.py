from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from traces.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make an API token for a user and print it once (only its SHA-256 is stored). "
        "Send it as `Authorization: Bearer <token>`."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for, e.g. CI")

    def handle(self, *args, username, name, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        _row, token = ApiToken.issue(user, name=name)
        # The token alone on stdout, so `TOKEN=$(manage.py create_api_token ci)` works.
        self.stdout.write(token)
        self.stderr.write(
            f"Token for {username} made. Copy it now: it cannot be shown again.", ending="\n"
        )
