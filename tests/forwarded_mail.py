"""Forwarded mail as clients write it, in several languages: for the forward rules' unit tests and the
same mails through the real stack. Each is written the way its client lays out a forward in plain text
(Gmail and Apple Mail also send an HTML part; the plain part is what is read first)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import EmailMessage

STAFF = "tom.berger@org.example"  # forwards customers' mail; has a role of his own in the workspace


@dataclass(frozen=True)
class Forward:
    client: str
    subject: str
    body: str
    original: str  # the original sender's address
    original_name: str
    original_subject: str
    note: str  # the forwarder's note (as the forward shows it, stripped)
    customer_text: str  # a line of the customer's own text


SAMPLES: tuple[Forward, ...] = (
    Forward(
        "gmail-en", "Fwd: Printer on floor 3 jams",
        "Can you look at this? She called about it this morning too.\n\nTom\n\n"
        "---------- Forwarded message ---------\n"
        "From: Carla Gómez <carla.gomez@customer.example>\n"
        "Date: Tue, Nov 24, 2026 at 9:12 AM\n"
        "Subject: Printer on floor 3 jams\n"
        "To: Tom Berger <tom.berger@org.example>\n\n\n"
        "Hello Tom,\n\nthe printer on floor 3 jams on every second page since Monday.\n\nThanks,\nCarla\n",
        "carla.gomez@customer.example", "Carla Gómez", "Printer on floor 3 jams",
        "Can you look at this? She called about it this morning too.\n\nTom",
        "the printer on floor 3 jams on every second page since Monday."),
    Forward(
        "outlook-de", "WG: Rechnung Oktober fehlt",
        "Hallo Team,\n\nbitte als Ticket anlegen.\n\nGruß\nTom\n\n"
        "________________________________\n"
        "Von: Hans Müller <hans.mueller@kunde.example>\n"
        "Gesendet: Dienstag, 24. November 2026 09:12\n"
        "An: Tom Berger <tom.berger@org.example>\n"
        "Betreff: Rechnung Oktober fehlt\n\n"
        "Guten Tag,\n\ndie Rechnung für Oktober ist bei uns nicht angekommen.\n\nMit freundlichen Grüßen\n"
        "Hans Müller\n",
        "hans.mueller@kunde.example", "Hans Müller", "Rechnung Oktober fehlt",
        "Hallo Team,\n\nbitte als Ticket anlegen.\n\nGruß\nTom",
        "die Rechnung für Oktober ist bei uns nicht angekommen."),
    Forward(
        "outlook-classic-en", "FW: Cannot log in to the portal",
        "FYI, see below.\n\n-----Original Message-----\n"
        "From: Smith, John [mailto:john.smith@customer.example]\n"
        "Sent: Tuesday, November 24, 2026 9:12 AM\n"
        "To: Berger, Tom\n"
        "Subject: Cannot log in to the portal\n\n"
        "Since the update I cannot log in to the portal. The page just reloads.\n",
        "john.smith@customer.example", "Smith, John", "Cannot log in to the portal",
        "FYI, see below.", "Since the update I cannot log in to the portal."),
    Forward(
        "apple-fr", "Fwd: Problème de connexion au VPN",
        "Bonjour,\n\npouvez-vous regarder ?\n\nDébut du message réexpédié :\n\n"
        "De: Élodie Martin <elodie.martin@client.example>\n"
        "Objet: Problème de connexion au VPN\n"
        "Date: 24 novembre 2026 à 09:12:00 UTC+1\n"
        "À: Tom Berger <tom.berger@org.example>\n\n"
        "Bonjour,\n\nje n'arrive plus à me connecter au VPN depuis ce matin.\n\nCordialement,\nÉlodie\n",
        "elodie.martin@client.example", "Élodie Martin", "Problème de connexion au VPN",
        "Bonjour,\n\npouvez-vous regarder ?", "je n'arrive plus à me connecter au VPN depuis ce matin."),
    Forward(
        "thunderbird-es", "Fwd: Pedido 4711 no ha llegado",
        "Para soporte.\n\n-------- Mensaje reenviado --------\n"
        "Asunto: \tPedido 4711 no ha llegado\n"
        "Fecha: \tTue, 24 Nov 2026 09:12:00 +0100\n"
        "De: \tJuan Pérez <juan.perez@cliente.example>\n"
        "Para: \tventas@org.example\n\n\n\n"
        "Hola,\n\nel pedido 4711 todavía no ha llegado.\n\nSaludos,\nJuan\n",
        "juan.perez@cliente.example", "Juan Pérez", "Pedido 4711 no ha llegado", "Para soporte.",
        "el pedido 4711 todavía no ha llegado."),
    Forward(
        "owa-nl", "FW: Levering te laat",
        "Zie hieronder.\n\n________________________________\n"
        "Van: Sanne de Vries <sanne.devries@klant.example>\n"
        "Verzonden: dinsdag 24 november 2026 09:12\n"
        "Aan: Tom Berger <tom.berger@org.example>\n"
        "Onderwerp: Levering te laat\n\n"
        "Goedemorgen,\n\nde levering van vorige week is nog steeds niet binnen.\n\nGroet,\nSanne\n",
        "sanne.devries@klant.example", "Sanne de Vries", "Levering te laat", "Zie hieronder.",
        "de levering van vorige week is nog steeds niet binnen."),
    Forward(
        "gmail-it", "Fwd: Fattura errata",
        "---------- Messaggio inoltrato ---------\n"
        "Da: Giulia Rossi <giulia.rossi@cliente.example>\n"
        "Date: mar 24 nov 2026 alle ore 09:12\n"
        "Subject: Fattura errata\n"
        "To: <amministrazione@org.example>\n\n\n"
        "Buongiorno,\n\nla fattura 2026/118 riporta un importo errato.\n",
        "giulia.rossi@cliente.example", "Giulia Rossi", "Fattura errata", "",
        "la fattura 2026/118 riporta un importo errato."),
    Forward(
        "outlook-pt", "ENC: Senha expirada",
        "Podem ajudar?\n\n________________________________\n"
        "De: Ana Souza <ana.souza@cliente.example>\n"
        "Enviado: terça-feira, 24 de novembro de 2026 09:12\n"
        "Para: Tom Berger <tom.berger@org.example>\n"
        "Assunto: Senha expirada\n\n"
        "Olá,\n\na minha senha expirou e não consigo redefini-la.\n",
        "ana.souza@cliente.example", "Ana Souza", "Senha expirada", "Podem ajudar?",
        "a minha senha expirou e não consigo redefini-la."),
)
BY_CLIENT = {s.client: s for s in SAMPLES}

# A reply, not a forward: Outlook quotes the history under the same kind of header block.
REPLY_WITH_HISTORY = (
    "Re: Printer on floor 3 jams",
    "Thanks, that fixed it.\n\n-----Original Message-----\nFrom: Carla Gómez <carla.gomez@customer.example>\n"
    "Sent: Tuesday, November 24, 2026 9:12 AM\nTo: Tom Berger\nSubject: Printer on floor 3 jams\n\nold text\n",
)
# Exchange names people of its own organisation without an address: nobody to name.
NO_ADDRESS = (
    "FW: Meeting room",
    "See below.\n\n________________________________\nFrom: Miller, Anna\nSent: Tuesday, November 24, 2026 9:12 AM\n"
    "To: Facilities\nSubject: Meeting room\n\nThe projector is broken.\n",
)


def raw(sample: Forward, sender: str = f"Tom Berger <{STAFF}>", to: str = "support@tracker.example",
        headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = sample.subject
    msg["Date"] = "Tue, 24 Nov 2026 10:30:00 +0100"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@org.example>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(sample.body)
    return bytes(msg)


def attached_forward(sender: str = f"Tom Berger <{STAFF}>", to: str = "support@tracker.example") -> bytes:
    """Outlook's "Forward as attachment": the forwarder's note, and the customer's mail as message/rfc822."""
    inner = EmailMessage()
    inner["From"] = "Petra Schmidt <petra.schmidt@kunde.example>"
    inner["To"] = "Tom Berger <tom.berger@org.example>"
    inner["Subject"] = "Zugang gesperrt"
    inner["Date"] = "Mon, 23 Nov 2026 16:40:00 +0100"
    inner["Message-ID"] = f"<{uuid.uuid4().hex}@kunde.example>"
    inner.set_content("Hallo Herr Berger,\n\nmein Zugang zum Kundenportal ist seit gestern gesperrt.\n\n"
                      "Viele Grüße\nPetra Schmidt\n")
    outer = EmailMessage()
    outer["From"] = sender
    outer["To"] = to
    outer["Subject"] = "WG: Zugang gesperrt"
    outer["Date"] = "Tue, 24 Nov 2026 08:05:00 +0100"
    outer["Message-ID"] = f"<{uuid.uuid4().hex}@org.example>"
    outer.set_content("Bitte kümmern, Frau Schmidt ist Key Account.\n\nTom\n")
    outer.add_attachment(inner, filename="Zugang gesperrt.eml")
    return bytes(outer)


def contact_form(visitor: str, relay: str = "no-reply@forms.org.example", subject: str = "Contact form: refund",
                 body: str = "Name: Lena Fischer\nMessage: I would like a refund for order 991.\n") -> bytes:
    """A web form's mail: always from the relay, the visitor's address in Reply-To."""
    msg = EmailMessage()
    msg["From"] = f"Website <{relay}>"
    msg["Reply-To"] = visitor
    msg["To"] = "support@tracker.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 24 Nov 2026 11:00:00 +0100"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@forms.org.example>"
    msg.set_content(body)
    return bytes(msg)
