"""Create the site's administrator (the user the front proxy logs in), once."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the administrator `admin` (superuser, staff) if missing."

    def handle(self, *args, **options):
        from NEMO.models import User

        user, created = User.objects.get_or_create(
            username="admin",
            defaults=dict(
                first_name="Lab",
                last_name="Admin",
                email="admin@example.org",
                is_active=True,
                is_staff=True,
                is_superuser=True,
            ),
        )
        self.stdout.write(f"admin {'created' if created else 'exists'}: id {user.id}")
